//! Open → opened latency: `cargo bench -p lockstep --bench open_latency`.
//!
//! In one run: Mosquitto from deploy/mosquitto (own ports), the server
//! in-process on a fresh database (SQLite; PostgreSQL with
//! `LOCKSTEP_TEST_DATABASE_URL=postgres://…`), 1,000 simulated lockers
//! (locker-sim, zero device latency) provisioned through the real flow.
//! Then admin opens are POSTed at a fixed rate for `BENCH_SECS` (default
//! 10) each: 200/s first, then higher steps while sustained, or lower
//! steps until sustained. Latency is from sending the
//! POST to the moment the committed channel log (and with it the read
//! model) shows `opened`. The baseline it names: the same POSTs' own
//! latency until `202 accepted`. A step is sustained when every command
//! ended `opened` and p99 < 100 ms; the highest such rate is reported.
//!
//! `BENCH_RATES=800,1000` runs exactly those steps instead.
//!
//! `BENCH_BROKER=embedded` runs the same against the embedded broker
//! (`server/src/mqtt/broker/`) instead of Mosquitto.

/// The server's allocator, as the shipped binary has it (src/main.rs).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use locker_sim::{Behaviour, Endpoint, Identity, Stats};
use lockstep_core::{
    eventstore::channels::{self, Channel},
    eventstore::events::Actor,
    identity::accounts::find_user_by_email,
    identity::caller::Caller,
    identity::tokens::{create_token, Abilities},
    lockers, provisioning,
    testing::fresh_database,
};
use lockstep_server::{Application, ServeConfig};
use lockstep_wire::{
    envelope::{names, OpenStatusUpdated},
    OpenStatus,
};
use uuid::Uuid;

const LOCKERS: usize = 1000;
/// 200/s first; then up while sustained, or down until sustained.
const UP: [u32; 8] = [250, 300, 400, 600, 800, 1000, 1200, 1500];
const DOWN: [u32; 5] = [150, 100, 75, 50, 25];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `lockstep_group_commit_unfused_total` by reason, from the process's
/// metrics (the app's recorder is process-wide).
fn unfused_by_reason() -> std::collections::HashMap<String, u64> {
    let text = lockstep_server::metrics::handle().render();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("lockstep_group_commit_unfused_total{reason=\"")?;
            let (reason, count) = rest.split_once("\"} ")?;
            Some((reason.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let backend = if std::env::var("LOCKSTEP_TEST_DATABASE_URL").is_ok() {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    let embedded = std::env::var("BENCH_BROKER").as_deref() == Ok("embedded");
    let broker_name = if embedded {
        "embedded broker"
    } else {
        "Mosquitto"
    };
    // The broker, exactly as deployed.
    let dir = std::env::temp_dir().join(format!("lockstep-bench-{}", Uuid::now_v7().simple()));
    let (dport, pport) = (free_port(), free_port());
    let mut mosquitto = None;
    if !embedded {
        let init = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/mosquitto/init");
        let ok = std::process::Command::new("bash")
            .arg(init)
            .arg(&dir)
            .args(["--dynsec-port", &dport.to_string()])
            .args(["--provisioning-port", &pport.to_string()])
            .args(["--bind", "127.0.0.1"])
            .env("LOCKSTEP_BROKER_PASSWORD", "bench-bridge")
            .env("PROVISIONING_PASSWORD", "bench-prov")
            .stdout(Stdio::null())
            .status()
            .expect("init runs")
            .success();
        assert!(ok, "deploy/mosquitto/init failed");
        mosquitto = Some(
            std::process::Command::new("mosquitto")
                .arg("-c")
                .arg(dir.join("mosquitto.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto"),
        );
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", pport))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    // The server.
    let db = fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    if embedded {
        config.mqtt = lockstep_server::config::MqttMode::Embedded;
        config.mqtt_embedded_addr = ([127, 0, 0, 1], dport).into();
        config.provisioning_password = lockstep_server::Secret::new("bench-prov");
    } else {
        config.mqtt_url = Some(lockstep_server::Secret::new(format!(
            "mqtt://lockstep:bench-bridge@127.0.0.1:{dport}"
        )));
    }
    config.offline_after_secs = 600;
    let app = Application::build(config).await.expect("app");
    let addr = app.local_addr();
    let services = app.services().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    let admin_user = find_user_by_email(&services.db, "admin@lockstep.test")
        .await
        .expect("q")
        .expect("admin");
    let admin = Caller::new(admin_user.clone(), Actor::User { id: admin_user.id });
    let token = create_token(
        &services.db,
        &admin_user.email,
        "bench",
        &Abilities::parse_list("*").expect("abilities"),
    )
    .await
    .expect("token")
    .secret;
    let (_, key) = provisioning::create_key(&services, &admin, "bench", None)
        .await
        .expect("key");

    // 1,000 lockers provision themselves and come online.
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    let prov = Endpoint {
        host: "127.0.0.1".into(),
        port: if embedded { dport } else { pport },
        username: Some("provisioning".into()),
        password: Some("bench-prov".into()),
    };
    let lockers_at = Endpoint {
        host: "127.0.0.1".into(),
        port: dport,
        username: None,
        password: None,
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for n in 0..LOCKERS {
        let (gate, prov, at, stats, key) = (
            gate.clone(),
            prov.clone(),
            lockers_at.clone(),
            stats.clone(),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let creds = {
                let _permit = gate.acquire().await.expect("gate");
                let who = Identity {
                    serial: format!("LAT-{n}"),
                    compartments: 2,
                    provisioning_key: Some(key),
                    model: "SIM".into(),
                    firmware: "1".into(),
                };
                locker_sim::provision(&prov, &who, Duration::from_secs(60))
                    .await
                    .expect("provisioned")
            };
            let mut locker = locker_sim::run(&at, creds, Behaviour::default(), stats);
            locker
                .wait_ready(Duration::from_secs(60))
                .await
                .expect("ready");
            locker
        }));
    }
    let mut lockers_running = Vec::new();
    for t in tasks {
        lockers_running.push(t.await.expect("locker"));
    }
    // Online in the read model (first heartbeats processed).
    loop {
        let banks = lockers::list_banks(&services, admin_user.tenant_id)
            .await
            .expect("banks");
        if banks.iter().filter(|b| b.online == Some(true)).count() == LOCKERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{backend}, {broker_name}: {LOCKERS} lockers provisioned and online in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let compartments: Vec<Uuid> = lockers::list_banks(&services, admin_user.tenant_id)
        .await
        .expect("banks")
        .iter()
        .map(|b| b.compartments[0].id)
        .collect();

    // Follow the committed log: when was each command seen `opened`?
    let opened: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let lagged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let mut tail = services.log_tail.subscribe();
        let (opened, lagged, services) = (opened.clone(), lagged.clone(), services.clone());
        let channel = Channel::TenantOpenRequests(admin_user.tenant_id);
        let name = channel.to_string();
        // As the realtime hub does: each wake-up reads everything new in
        // pages, so the follower costs one query per burst, not per entry.
        tokio::spawn(async move {
            let mut read_to = 0_i64;
            loop {
                match tail.recv().await {
                    Ok(a) if a.channel == name && a.seq > read_to => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Missed wake-ups only: the log itself has everything.
                        lagged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
                loop {
                    let Ok(page) = channels::since(&services.db, &channel, read_to, 500).await
                    else {
                        break;
                    };
                    // Seen once read: an upper bound on when it was visible.
                    let seen = Instant::now();
                    let n = page.events.len();
                    for e in page.events {
                        read_to = read_to.max(e.seq);
                        let Some(update) =
                            e.data_as::<OpenStatusUpdated>(names::OPEN_STATUS_UPDATED)
                        else {
                            continue;
                        };
                        if update.status != OpenStatus::Opened {
                            continue;
                        }
                        {
                            let id = update.command_id;
                            if let Ok(mut m) = opened.lock() {
                                m.entry(id).or_insert(seen);
                            }
                        }
                    }
                    if n < 500 {
                        break;
                    }
                }
            }
        });
    }

    let http = reqwest::Client::new();
    let mut best = None;
    println!(
        "{:>7} {:>7} {:>7} | {:>9} {:>9} {:>9} | {:>12} {:>6}",
        "rate/s", "issued", "opened", "p50 ms", "p99 ms", "max ms", "accept p50", "ratio"
    );
    // `BENCH_RATES=600,800` runs exactly those steps (to profile one
    // rate); by default 200/s first, then up or down as above.
    let fixed: Option<Vec<u32>> = std::env::var("BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
    let mut rates = fixed.clone().unwrap_or_else(|| vec![200u32]);
    let mut step = 0;
    while let Some(&rate) = rates.get(step) {
        step += 1;
        let sent: Arc<Mutex<Vec<(Uuid, Instant, f64)>>> = Arc::default();
        let step_started_ms = lockstep_core::now_ms();
        let writes_before = services.writes.stats();
        let unfused_before = unfused_by_reason();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        let total = u64::from(rate) * secs;
        let mut handles = Vec::with_capacity(total as usize);
        for i in 0..total {
            ticker.tick().await;
            let compartment = compartments[(i as usize) % compartments.len()];
            let (http, sent, token) = (http.clone(), sent.clone(), token.clone());
            handles.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let res = http
                    .post(format!(
                        "http://{addr}/api/v1/compartments/{compartment}/open"
                    ))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"override": true, "reason": "bench"}))
                    .send()
                    .await;
                let accepted = t0.elapsed().as_secs_f64() * 1000.0;
                if let Ok(r) = res {
                    if let Ok(v) = r.json::<serde_json::Value>().await {
                        if let Some(id) = v
                            .get("command_id")
                            .and_then(|c| c.as_str())
                            .and_then(|c| Uuid::parse_str(c).ok())
                        {
                            if let Ok(mut s) = sent.lock() {
                                s.push((id, t0, accepted));
                            }
                        }
                    }
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        // Let the last commands finish (bounded by the open timeout).
        let deadline = Instant::now() + Duration::from_secs(25);
        let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
        loop {
            let done = {
                let m = opened.lock().expect("map");
                sent.iter().filter(|(id, _, _)| m.contains_key(id)).count()
            };
            if done == sent.len() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = opened.lock().map(|m| m.clone()).unwrap_or_default();
        let mut lat: Vec<f64> = sent
            .iter()
            .filter_map(|(id, t0, _)| {
                m.get(id)
                    .map(|t| t.duration_since(*t0).as_secs_f64() * 1000.0)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let mut acc: Vec<f64> = sent.iter().map(|(_, _, a)| *a).collect();
        acc.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
        );
        let acc50 = percentile(&acc, 0.5);
        println!(
            "{rate:>7} {total:>7} {:>7} | {p50:>9.1} {p99:>9.1} {max:>9.1} | {acc50:>12.1} {:>6.1}",
            lat.len(),
            p50 / acc50
        );
        // Where the time goes, from the read model's own timestamps:
        // request → sent (outbox, broker PUBACK, the `sent` write) and
        // sent → opened (locker round trip, the result write).
        let stages = sqlx::query(
            "SELECT requested_at, sent_at, opened_at FROM open_requests \
             WHERE requested_at >= $1 AND opened_at IS NOT NULL",
        )
        .bind(step_started_ms)
        .fetch_all(&services.db.pool)
        .await
        .unwrap_or_default();
        let mut to_sent = Vec::new();
        let mut to_opened = Vec::new();
        for r in &stages {
            use sqlx::Row;
            let (Ok(q), Ok(Some(st)), Ok(Some(op))) = (
                r.try_get::<i64, _>("requested_at"),
                r.try_get::<Option<i64>, _>("sent_at"),
                r.try_get::<Option<i64>, _>("opened_at"),
            ) else {
                continue;
            };
            to_sent.push((st - q) as f64);
            to_opened.push((op - st) as f64);
        }
        to_sent.sort_by(f64::total_cmp);
        to_opened.sort_by(f64::total_cmp);
        println!(
            "        stages p50/p99 ms: request→sent {:.0}/{:.0}, sent→opened {:.0}/{:.0}",
            percentile(&to_sent, 0.5),
            percentile(&to_sent, 0.99),
            percentile(&to_opened, 0.5),
            percentile(&to_opened, 0.99)
        );
        // How the writes were committed: batches, the writes in them,
        // batches rolled back and cut at a failing write, batches ended in
        // one statement, and reads that had to apply a
        // batch's deferred writes before its end.
        let w = services.writes.stats();
        println!(
            "        group commit: {} batches of {} writes, {} split at a failing write, {} alone, {} ended in one statement ({} with no BEGIN/COMMIT, {} by SQLite's direct writer), {} with nothing to end, {} mid-batch flushes",
            w.batches - writes_before.batches,
            w.batched - writes_before.batched,
            w.splits - writes_before.splits,
            w.alone - writes_before.alone,
            w.fused - writes_before.fused,
            w.single_statement - writes_before.single_statement,
            w.direct - writes_before.direct,
            w.empty - writes_before.empty,
            w.flushes - writes_before.flushes
        );
        let unfused = unfused_by_reason();
        let mut reasons: Vec<String> = unfused
            .iter()
            .map(|(reason, n)| (reason, n - unfused_before.get(reason).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        reasons.sort();
        if !reasons.is_empty() {
            println!(
                "        ended a statement at a time, by why: {}",
                reasons.join(", ")
            );
        }
        let complete = lat.len() as u64 == total;
        let sustained = complete && p99 < 100.0;
        if sustained {
            best = Some(best.map_or(rate, |b: u32| b.max(rate)));
        }
        match (rate, sustained) {
            _ if fixed.is_some() => {}
            (200, true) => rates.extend(UP),
            (200, false) => rates.extend(DOWN),
            (r, true) if r < 200 => break,
            (r, false) if r > 200 => break,
            _ => {}
        }
    }
    println!(
        "{backend}, {broker_name}: highest sustained rate with p99 < 100 ms: {} (steps {:?}, {secs} s each; missed wake-ups, caught up from the log: {})",
        best.map(|r| format!("{r} opens/s"))
            .unwrap_or_else(|| "none of the steps".into()),
        &rates[..step.min(rates.len())],
        lagged.load(std::sync::atomic::Ordering::Relaxed)
    );
    for l in lockers_running {
        l.stop();
    }
    if let Some(mut m) = mosquitto {
        let _ = m.kill();
        let _ = m.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}
