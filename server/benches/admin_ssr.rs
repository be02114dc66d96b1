//! The command history's server render with 10,000 commands:
//! `cargo bench -p lockstep --bench admin_ssr`.
//!
//! In one run: the server in-process on a fresh database (SQLite;
//! PostgreSQL with `LOCKSTEP_TEST_DATABASE_URL=postgres://…`), 10,000
//! admin opens written through the real command path (`request_open`,
//! `record_sent`, then `opened`, or `failed` one in ten), then
//! `BENCH_REQUESTS` (default 200) sequential GETs of each page as a
//! signed-in browser gets it (full HTML, server-rendered). The baseline it
//! names: the JSON API's answer for the same 25 rows
//! (`GET /api/v1/compartments/open-requests?per_page=25`), so the ratio is
//! what rendering the page costs over reading its data.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use lockstep_core::{
    eventstore::events::Actor,
    identity::{
        accounts::find_user_by_email,
        caller::Caller,
        tokens::{create_token, Abilities},
    },
    lockers::{self, NewBank, NewCompartment},
    now_ms, opens,
    testing::fresh_database,
};
use lockstep_server::{Application, ServeConfig};

const COMMANDS: usize = 10_000;
const COMPARTMENTS: i64 = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Figures {
    p50: f64,
    p95: f64,
    mean: f64,
    bytes: usize,
}

async fn measure(client: &reqwest::Client, url: &str, token: Option<&str>, n: usize) -> Figures {
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    // Two untimed: connections and caches warm.
    for i in 0..n + 2 {
        let mut req = client.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let started = Instant::now();
        let res = req.send().await.expect("request");
        let status = res.status();
        let body = res.bytes().await.expect("body");
        let took = started.elapsed().as_secs_f64() * 1000.0;
        assert!(status.is_success(), "{url}: {status}");
        if i >= 2 {
            ms.push(took);
            bytes = body.len();
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Figures {
        p50: percentile(&ms, 0.5),
        p95: percentile(&ms, 0.95),
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
        bytes,
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let backend = if std::env::var("LOCKSTEP_TEST_DATABASE_URL").is_ok() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let db = fresh_database().await;
    let config = ServeConfig::for_tests(&db.url, db.dir.clone());
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
    let bank = lockers::register_bank(
        &services,
        &admin,
        NewBank {
            serial: "SSR-1".into(),
            name: "SSR hall".into(),
            location: None,
            compartments: (1..=COMPARTMENTS)
                .map(|number| NewCompartment {
                    number,
                    size: "medium".into(),
                    label: None,
                })
                .collect(),
        },
    )
    .await
    .expect("bank");

    // 10,000 commands through the command path, eight at a time.
    let seeding = Instant::now();
    let compartments: Arc<Vec<_>> = Arc::new(bank.compartments.iter().map(|c| c.id).collect());
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (services, admin, compartments) =
            (services.clone(), admin.clone(), compartments.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..COMMANDS).step_by(8) {
                let decision = opens::request_open(
                    &services,
                    &admin,
                    opens::OpenCommandInput {
                        compartment_id: compartments[i % compartments.len()],
                        override_: true,
                        reason: Some(format!("bench {i}")),
                        ..Default::default()
                    },
                    now_ms(),
                )
                .await
                .expect("open");
                let id = decision.command_id;
                opens::record_sent(&services, id, now_ms())
                    .await
                    .expect("sent");
                let ok = i % 10 != 0;
                let error = (!ok).then(|| "jammed".to_string());
                opens::record_result(&services, id, ok, error, now_ms())
                    .await
                    .expect("result");
            }
        }));
    }
    for t in tasks {
        t.await.expect("seed task");
    }
    let (_, total) = opens::history(
        &services,
        admin_user.tenant_id,
        &opens::HistoryFilter {
            page: 1,
            per_page: 1,
            ..Default::default()
        },
    )
    .await
    .expect("history");
    assert_eq!(total as usize, COMMANDS);
    let seeded = seeding.elapsed();

    // A signed-in browser.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let base = format!("http://{addr}");
    let login = browser
        .post(format!("{base}/sfn/login"))
        .header("Origin", &base)
        .form(&[
            ("email", "admin@lockstep.test"),
            ("password", "admin-password-123"),
            ("next", ""),
        ])
        .send()
        .await
        .expect("login");
    assert!(login.status().is_success(), "login: {}", login.status());

    let api = measure(
        &browser,
        &format!("{base}/api/v1/compartments/open-requests?per_page=25"),
        Some(&token),
        n,
    )
    .await;
    let pages = [
        ("/admin/commands (first page)", "/admin/commands"),
        (
            "/admin/commands?status=failed",
            "/admin/commands?status=failed",
        ),
        (
            "/admin/commands?page=400 (last)",
            "/admin/commands?page=400",
        ),
    ];
    println!(
        "admin_ssr: {COMMANDS} commands on {backend} (seeded in {:.1} s), {n} sequential GETs each",
        seeded.as_secs_f64()
    );
    println!(
        "  baseline  GET /api/v1/compartments/open-requests?per_page=25: p50 {:.2} ms, p95 {:.2} ms, mean {:.2} ms, {} B",
        api.p50, api.p95, api.mean, api.bytes
    );
    for (label, path) in pages {
        let f = measure(&browser, &format!("{base}{path}"), None, n).await;
        println!(
            "  SSR       GET {label}: p50 {:.2} ms, p95 {:.2} ms, mean {:.2} ms, {} B; p50 {:.2}x the baseline",
            f.p50,
            f.p95,
            f.mean,
            f.bytes,
            f.p50 / api.p50
        );
    }
}
