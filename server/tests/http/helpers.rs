//! `spawn_app`: the server on a free port, with a handle to stop it.

use std::{net::SocketAddr, sync::Arc};

use lockstep_core::{
    identity::accounts::{self, NewUser, Role, User},
    testing::{fresh_database, TestDb},
    Services,
};
use lockstep_server::{Application, ServeConfig};
use reqwest::{cookie::Jar, redirect::Policy, Client};
use tokio::{sync::oneshot, task::JoinHandle};

pub const ADMIN_EMAIL: &str = "admin@lockstep.test";
pub const ADMIN_PASSWORD: &str = "admin-password-123";
pub const USER_PASSWORD: &str = "user-password-456";

pub struct TestApp {
    pub addr: SocketAddr,
    pub services: Services,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown, awaited.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

pub async fn start(config: ServeConfig) -> TestApp {
    let app = Application::build(config).await.expect("the app starts");
    let addr = app.local_addr();
    let services = app.services().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        services,
        stop: Some(stop),
        task: Some(task),
    }
}

pub async fn spawn_on(db: &TestDb) -> TestApp {
    start(ServeConfig::for_tests(&db.url, db.dir.clone())).await
}

/// A fresh database and the app on it.
pub async fn spawn_app() -> (TestApp, TestDb) {
    let db = fresh_database().await;
    let app = spawn_on(&db).await;
    (app, db)
}

pub async fn add_user(app: &TestApp, email: &str, role: Role, tenant: &str) -> User {
    accounts::add_user(
        &app.services.db,
        NewUser {
            email: email.into(),
            name: None,
            role,
            tenant_name: tenant.into(),
            password: USER_PASSWORD.into(),
        },
    )
    .await
    .expect("add user")
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub fn browser(jar: Arc<Jar>) -> Client {
    Client::builder()
        .cookie_provider(jar)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Signs in through the login server function, as the login form does.
pub async fn login(
    app: &TestApp,
    client: &Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(app.url("/sfn/login"))
        .header("Origin", app.origin())
        .form(&[("email", email), ("password", password), ("next", "")])
        .send()
        .await
        .expect("login request")
}

pub async fn me_status(app: &TestApp, client: &Client) -> u16 {
    client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .status()
        .as_u16()
}

/// The value of one series of `/metrics` (0 when absent), e.g.
/// `lockstep_rejections_total{reason="invalid_token"}`. The recorder is
/// shared by every test in this binary: read it before and assert on the
/// difference, never on an absolute count.
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let key = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `lockstep_rejections_total{reason="…"}`.
pub async fn rejections(app: &TestApp, reason: &str) -> u64 {
    metric(
        app,
        &format!("lockstep_rejections_total{{reason=\"{reason}\"}}"),
    )
    .await as u64
}

/// Waits (up to 10 s) until `reason` was counted more than `before` times.
pub async fn await_rejection(app: &TestApp, reason: &str, before: u64) {
    let counted = async {
        while rejections(app, reason).await <= before {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), counted)
        .await
        .unwrap_or_else(|_| panic!("{reason} was not counted again (was {before})"));
}
