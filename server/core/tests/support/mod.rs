//! A world for the worker tests: a database, an admin, a bank of six
//! compartments, a gateway scripted per compartment, and the workers
//! running. Shared by `workers.rs` and `worker_panics.rs` (each uses part).
#![allow(dead_code)]

use lockstep_core::opens::OpenStatus;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use lockstep_core::{
    db::Db,
    eventstore::events::Actor,
    gateway::{GatewayError, LockerAccount, LockerGateway, OpenCommand},
    identity::accounts::Role,
    identity::caller::Caller,
    identity::throttle::ThrottleConfig,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput},
    services::{CoreSettings, Services},
    testing::{fresh_database, TestDb},
    workers,
};
use tokio::sync::watch;
use uuid::Uuid;

/// What the gateway does with a send to a compartment number.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    Deliver,
    Hang,
    Panic,
    /// Panics on the first attempt, then delivers.
    PanicOnce,
    Error,
}

/// A gateway scripted per compartment number; counts attempts per command.
#[derive(Default)]
pub struct Scripted {
    by_compartment: HashMap<i64, Behaviour>,
    attempts: Mutex<HashMap<Uuid, usize>>,
}

impl Scripted {
    pub fn new(script: &[(i64, Behaviour)]) -> Self {
        Self {
            by_compartment: script.iter().copied().collect(),
            ..Self::default()
        }
    }

    pub fn attempts(&self, command_id: Uuid) -> usize {
        self.attempts
            .lock()
            .map(|a| a.get(&command_id).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

#[async_trait]
impl LockerGateway for Scripted {
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError> {
        let attempt = {
            let mut a = self.attempts.lock().expect("attempts");
            let n = a.entry(command.command_id).or_default();
            *n += 1;
            *n
        };
        match self
            .by_compartment
            .get(&command.compartment)
            .copied()
            .unwrap_or(Behaviour::Deliver)
        {
            Behaviour::Deliver => Ok(()),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Panic => panic!("injected: the gateway panicked"),
            Behaviour::PanicOnce if attempt == 1 => panic!("injected: the gateway panicked once"),
            Behaviour::PanicOnce => Ok(()),
            Behaviour::Error => Err(GatewayError("injected: the broker refused".into())),
        }
    }
    async fn create_account(&self, _: &LockerAccount) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn disable_account(&self, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn deliver_reply(&self, _: &str, _: &[u8]) -> Result<(), GatewayError> {
        Ok(())
    }
}

pub struct World {
    _t: TestDb,
    pub s: Services,
    pub admin: Caller,
    pub bank: lockers::BankView,
    stop: watch::Sender<bool>,
    workers: tokio::task::JoinHandle<()>,
}

impl World {
    pub fn compartment(&self, number: i64) -> Uuid {
        self.bank
            .compartments
            .iter()
            .find(|c| c.number == number)
            .map(|c| c.id)
            .expect("compartment")
    }

    pub async fn open(&self, number: i64) -> Uuid {
        let d = opens::request_open(
            &self.s,
            &self.admin,
            OpenCommandInput {
                compartment_id: self.compartment(number),
                override_: true,
                reason: Some("test".into()),
                ..Default::default()
            },
            now_ms(),
        )
        .await
        .expect("open");
        assert_eq!(d.status, OpenStatus::Accepted);
        d.command_id
    }

    pub async fn status(&self, id: Uuid) -> (String, Option<String>) {
        let v = opens::get_open_request(&self.s, &self.admin, id)
            .await
            .expect("query")
            .expect("visible");
        (
            v.status.to_string(),
            v.failure_reason.map(|r| r.to_string()),
        )
    }

    /// Waits (on the channel log's tail, not on a clock) until `id` has
    /// one of `statuses`; panics after `within`.
    pub async fn until(
        &self,
        id: Uuid,
        statuses: &[&str],
        within: Duration,
    ) -> (String, Option<String>) {
        let mut tail = self.s.log_tail.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = self.status(id).await;
            if statuses.contains(&now.0.as_str()) {
                return now;
            }
            match tokio::time::timeout_at(deadline, tail.recv()).await {
                Ok(_) => {}
                Err(_) => panic!("{id} still {now:?} after {within:?}; wanted {statuses:?}"),
            }
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.workers.await.expect("the workers stop cleanly");
    }
}

pub fn settings(open_timeout: Duration) -> CoreSettings {
    CoreSettings {
        open_timeout,
        gateway_deadline: Duration::from_millis(300),
        job_deadline: Duration::from_millis(600),
        stall_after: Duration::from_secs(2),
        ..Default::default()
    }
}

pub async fn world(gateway: Arc<Scripted>, settings: CoreSettings) -> World {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let s = Services::new(db.clone(), ThrottleConfig::default())
        .with_settings(settings)
        .with_gateway(gateway);
    let admin = lockstep_core::testing::add_user(&db, "admin@a.io", Role::Admin, "A").await;
    let admin = Caller::new(admin.clone(), Actor::User { id: admin.id });
    let bank = lockers::register_bank(
        &s,
        &admin,
        NewBank {
            serial: format!("SN-{}", Uuid::now_v7().simple()),
            name: "Lobby".into(),
            location: None,
            compartments: (1..=6)
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
    let (stop, stopped) = watch::channel(false);
    let workers = workers::spawn_workers(s.clone(), stopped);
    World {
        _t: t,
        s,
        admin,
        bank,
        stop,
        workers,
    }
}
