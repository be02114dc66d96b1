//! `locker-sim`: N simulated locker banks as real MQTT clients. Each one
//! provisions itself (with a provisioning key, so no pre-registration is
//! needed), then heartbeats and answers commands until Ctrl-C.
//!
//!   locker-sim --lockers 100 --provisioning-key lpk_... \
//!     --provisioning-url mqtt://provisioning:PASSWORD@127.0.0.1:1884 \
//!     --broker-url mqtt://127.0.0.1:1883

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use clap::Parser;
use locker_sim::{provision, run, Behaviour, Endpoint, Identity, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "locker-sim",
    about = "Simulated Lockstep locker banks over MQTT"
)]
struct Args {
    /// How many locker banks.
    #[arg(long, default_value_t = 10)]
    lockers: u32,
    /// Compartments per bank.
    #[arg(long, default_value_t = 4)]
    compartments: u32,
    /// The provisioning listener, with the shared provisioning login.
    #[arg(
        long,
        env = "SIM_PROVISIONING_URL",
        default_value = "mqtt://provisioning:lockstep-provisioning@127.0.0.1:11883"
    )]
    provisioning_url: String,
    /// The listener lockers use with their own accounts.
    #[arg(long, env = "SIM_BROKER_URL", default_value = "mqtt://127.0.0.1:11883")]
    broker_url: String,
    /// A provisioning key of the tenant the banks join.
    #[arg(long, env = "SIM_PROVISIONING_KEY")]
    provisioning_key: Option<String>,
    /// Serial prefix; serials are `{prefix}{n}`.
    #[arg(long, default_value = "SIM-")]
    serial_prefix: String,
    /// Milliseconds between a command and its result.
    #[arg(long, default_value_t = 300)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0.02)]
    failure_rate: f64,
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u64,
    /// Chance per heartbeat to fall silent for --silence-secs.
    #[arg(long, default_value_t = 0.0)]
    silence_rate: f64,
    #[arg(long, default_value_t = 120)]
    silence_secs: u64,
    /// Report doors opening and closing after completed opens.
    #[arg(long)]
    doors: bool,
    /// Provisionings in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Exit once every locker is provisioned and online (for benchmarks).
    #[arg(long)]
    exit_when_online: bool,
    /// Baseline for the provisioning benchmark: only connect N clients to
    /// the provisioning listener and subscribe to their reply topics (the
    /// broker's share of provisioning, no server involved), then exit.
    #[arg(long)]
    baseline_connect_only: bool,
}

/// This process's CPU seconds and resident memory, from /proc.
fn own_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let rss_pages = fields
        .get(21)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, rss_pages * 4096)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let (provisioning_at, broker_at) = match (
        Endpoint::parse(&args.provisioning_url),
        Endpoint::parse(&args.broker_url),
    ) {
        (Ok(p), Ok(b)) => (p, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("locker-sim: {e}");
            std::process::exit(2);
        }
    };
    let behaviour = Behaviour {
        latency: Duration::from_millis(args.latency_ms),
        failure_rate: args.failure_rate,
        duplicate_rate: args.duplicate_rate,
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        silence_rate: args.silence_rate,
        silence: Duration::from_secs(args.silence_secs),
        firmware: "sim-1.0".into(),
        report_doors: args.doors,
    };
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    if args.baseline_connect_only {
        let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
        let mut tasks = Vec::new();
        for _ in 0..args.lockers {
            let (gate, at) = (gate.clone(), provisioning_at.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.ok()?;
                locker_sim::connect_only(&at, Duration::from_secs(60))
                    .await
                    .ok()
            }));
        }
        let mut clients = Vec::new();
        for t in tasks {
            if let Ok(Some(c)) = t.await {
                clients.push(c);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let (cpu, rss) = own_usage();
        println!(
            "baseline: {} of {} clients connected and subscribed in {elapsed:.1} s ({:.0}/s); simulator cpu {cpu:.1} s, rss {} MB",
            clients.len(),
            args.lockers,
            clients.len() as f64 / elapsed.max(0.001),
            rss / 1_000_000
        );
        std::process::exit(if clients.len() as u32 == args.lockers {
            0
        } else {
            1
        });
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..args.lockers {
        let gate = gate.clone();
        let provisioning_at = provisioning_at.clone();
        let broker_at = broker_at.clone();
        let behaviour = behaviour.clone();
        let stats = stats.clone();
        let done = done_tx.clone();
        let who = Identity {
            serial: format!("{}{n}", args.serial_prefix),
            compartments: args.compartments,
            provisioning_key: args.provisioning_key.clone(),
            model: "SIM-4".into(),
            firmware: "sim-1.0".into(),
        };
        tokio::spawn(async move {
            let mut attempt = 0;
            let creds = loop {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                match provision(&provisioning_at, &who, Duration::from_secs(30)).await {
                    Ok(c) => break c,
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(serial = %who.serial, error = %e, "provisioning failed; retrying");
                    }
                    Err(e) => {
                        eprintln!("locker-sim: {}: {e}", who.serial);
                        let _ = done.send(false);
                        return;
                    }
                }
            };
            let mut locker = run(&broker_at, creds, behaviour, stats);
            let ok = locker.wait_ready(Duration::from_secs(120)).await.is_ok();
            let _ = done.send(ok);
            // Keep the locker running for the life of the process.
            std::mem::forget(locker);
        });
    }
    drop(done_tx);
    let mut provisioned = 0u32;
    let mut failed = 0u32;
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    while provisioned + failed < args.lockers {
        tokio::select! {
            d = done_rx.recv() => match d {
                Some(true) => provisioned += 1,
                Some(false) => failed += 1,
                None => break,
            },
            _ = report.tick() => {
                let (cpu, rss) = own_usage();
                println!("{:>6.1}s provisioned+online {provisioned}/{}  failed {failed}  cpu {cpu:.1}s  rss {} MB",
                    started.elapsed().as_secs_f64(), args.lockers, rss / 1_000_000);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu, rss) = own_usage();
    println!(
        "all done: {provisioned} of {} lockers provisioned and online in {elapsed:.1} s ({:.0}/s), {failed} failed; simulator cpu {cpu:.1} s, rss {} MB",
        args.lockers,
        f64::from(provisioned) / elapsed.max(0.001),
        rss / 1_000_000
    );
    if args.exit_when_online {
        std::process::exit(if failed == 0 { 0 } else { 1 });
    }
    let mut report = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = report.tick() => {
                println!(
                    "online {}  heartbeats {}  commands {}  results {}  expired {}  duplicates ignored {}  disconnects {}",
                    stats.online.load(Ordering::Relaxed),
                    stats.heartbeats.load(Ordering::Relaxed),
                    stats.commands.load(Ordering::Relaxed),
                    stats.results.load(Ordering::Relaxed),
                    stats.expired.load(Ordering::Relaxed),
                    stats.duplicates_ignored.load(Ordering::Relaxed),
                    stats.disconnects.load(Ordering::Relaxed),
                );
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
}
