//! `Services`: the one handle the adapters (HTTP routes, server functions,
//! the CLI, the MQTT bridge) hold to reach the core: the database, the
//! locker gateway, the settings, the log's after-commit tail. Cheap to
//! clone.

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, Notify};

use crate::{
    db::Db,
    eventstore::channels::Appended,
    eventstore::group_commit::GroupCommit,
    eventstore::projections::{side_effects, Mode},
    eventstore::store::{Committer, Written},
    gateway::{AccountTurns, LockerGateway, RecordingGateway},
    identity::throttle::{LoginThrottle, ThrottleConfig},
    webhooks::WebhookSender,
    workers::progress::SharedHealth,
};

/// Settings of the event core.
#[derive(Clone, Copy, Debug)]
pub struct CoreSettings {
    /// How long an open command waits for the locker before `failed/timeout`.
    pub open_timeout: Duration,
    /// How long the channel log keeps envelopes.
    pub channel_retention: Duration,
    /// Silence after which an online locker bank is marked offline.
    pub offline_after: Duration,
    /// The longest one gateway call (a send and its PUBACK, an account
    /// change, a reply) may take before it counts as failed.
    pub gateway_deadline: Duration,
    /// The longest one outbox job or worker step may take before it is
    /// aborted (kept under the outbox lease, `outbox::LEASE_MS`).
    pub job_deadline: Duration,
    /// Overdue work or a silent worker older than this makes `/readyz`
    /// fail and the watchdog log an error.
    pub stall_after: Duration,
}

impl Default for CoreSettings {
    fn default() -> Self {
        Self {
            open_timeout: Duration::from_secs(20),
            channel_retention: Duration::from_secs(24 * 3600),
            offline_after: Duration::from_secs(90),
            gateway_deadline: Duration::from_secs(15),
            job_deadline: Duration::from_secs(20),
            stall_after: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct Services {
    pub db: Db,
    /// The hot writes (opens, `sent`, results, timeouts), committed
    /// together when they arrive together.
    pub writes: GroupCommit,
    pub login_throttle: LoginThrottle,
    pub settings: CoreSettings,
    /// Every channel-log entry, after its transaction committed.
    pub log_tail: broadcast::Sender<Appended>,
    /// Wakes the outbox and timer workers after a commit.
    pub wake: Arc<Notify>,
    pub gateway: Arc<dyn LockerGateway>,
    /// The workers' progress, for the stall report.
    pub workers: SharedHealth,
    /// The locker listener's address, told to lockers in provisioning
    /// replies (`broker_url`).
    pub locker_broker_url: Option<Arc<str>>,
    /// One bank's broker-account changes at a time.
    pub account_turns: AccountTurns,
    /// Delivers the hub's webhooks (none configured: None).
    pub webhooks: Option<Arc<dyn WebhookSender>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("db", &self.db)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Services with default settings and the recording gateway (which
    /// sends nothing: it records what would be sent).
    pub fn new(db: Db, throttle: ThrottleConfig) -> Self {
        Self {
            writes: GroupCommit::new(db.clone()),
            db,
            login_throttle: LoginThrottle::new(throttle),
            settings: CoreSettings::default(),
            log_tail: broadcast::channel(4096).0,
            wake: Arc::new(Notify::new()),
            gateway: Arc::new(RecordingGateway::default()),
            workers: SharedHealth::default(),
            locker_broker_url: None,
            account_turns: AccountTurns::default(),
            webhooks: None,
        }
    }

    pub fn with_webhooks(mut self, sender: Arc<dyn WebhookSender>) -> Self {
        self.webhooks = Some(sender);
        self
    }

    pub fn with_locker_broker_url(mut self, url: Option<String>) -> Self {
        self.locker_broker_url = url.filter(|u| !u.trim().is_empty()).map(Arc::from);
        self
    }

    pub fn with_settings(mut self, settings: CoreSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn with_gateway(mut self, gateway: Arc<dyn LockerGateway>) -> Self {
        self.gateway = gateway;
        self
    }

    pub fn mode(&self) -> Mode {
        Mode::Live {
            open_timeout_ms: self.settings.open_timeout.as_millis() as i64,
        }
    }

    /// Tells followers of the log about what a committed write appended,
    /// and wakes the outbox worker when the write queued a job for it.
    pub fn published(&self, written: &Written) {
        for entry in &written.appended {
            // No receiver is fine: nobody is following right now.
            let _ = self.log_tail.send(entry.clone());
        }
        if written
            .events
            .iter()
            .any(|e| side_effects::queues_outbox_job(&e.event))
        {
            self.wake.notify_one();
        }
    }
}

impl Committer for Services {
    fn mode(&self) -> Mode {
        Services::mode(self)
    }

    fn published(&self, written: &Written) {
        Services::published(self, written)
    }
}
