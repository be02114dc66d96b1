//! Every setting of `lockstep serve`, read from flags or environment
//! variables (flags win), with defaults that run the embedded setup.

use std::{
    convert::Infallible,
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use clap::{Args, ValueEnum};
use lockstep_core::identity::throttle::ThrottleConfig;

/// A setting that must never reach a log or an error message: its
/// `Debug` prints `[redacted]`; [`Secret::expose`] is the one way in.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// How the server reaches lockers when `MQTT_URL` is unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum MqttMode {
    /// Start an in-process broker (see docs/mqtt.md for what it enforces).
    #[default]
    Embedded,
    /// No broker: open commands are recorded, not sent.
    Off,
}

/// Where the data lives; shared by every subcommand.
#[derive(Clone, Debug, Args)]
pub struct StorageArgs {
    /// Directory for the default SQLite database and other local state.
    #[arg(long, env = "LOCKSTEP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `<data dir>/lockstep.db`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StorageArgs {
    /// The database URL in force, and whether it is the default file in the
    /// data directory (which then has to exist and be writable).
    pub fn resolved_url(&self) -> (String, bool) {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => (url.clone(), false),
            _ => (lockstep_core::db::default_sqlite_url(&self.data_dir), true),
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "LOCKSTEP_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Public origin (scheme://host[:port]) browsers use; state-changing
    /// requests must come from it. Defaults to the request's own Host.
    #[arg(long, env = "LOCKSTEP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    #[arg(long, env = "LOCKSTEP_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Idle time after which a session expires, in hours.
    #[arg(long, env = "LOCKSTEP_SESSION_HOURS", default_value_t = 24 * 7)]
    pub session_hours: u32,
    /// Email of the admin created on first start.
    #[arg(
        long,
        env = "LOCKSTEP_ADMIN_EMAIL",
        default_value = "admin@lockstep.local"
    )]
    pub admin_email: String,
    /// Password of the admin created on first start; generated and printed
    /// once when unset.
    #[arg(long, env = "LOCKSTEP_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
    /// The MQTT broker (`mqtt://[user[:password]@]host[:port]`), normally
    /// Mosquitto set up with deploy/mosquitto. Unset: see `--mqtt`.
    #[arg(long, env = "MQTT_URL", hide_env_values = true)]
    pub mqtt_url: Option<Secret>,
    /// Without MQTT_URL: `embedded` starts an in-process broker, `off` runs
    /// with no broker (commands are recorded, not sent).
    #[arg(long, env = "LOCKSTEP_MQTT", value_enum, default_value_t = MqttMode::Embedded)]
    pub mqtt: MqttMode,
    /// Where the embedded broker listens (not 1883, which a system
    /// Mosquitto may hold).
    #[arg(long, env = "MQTT_EMBEDDED_ADDR", default_value = "127.0.0.1:11883")]
    pub mqtt_embedded_addr: SocketAddr,
    /// The locker listener's address as lockers reach it
    /// (`mqtt://host:port`), sent in every provisioning reply as
    /// `broker_url`. Unset: the embedded broker's own address, or nothing
    /// with MQTT_URL (lockers then use the address they were built with).
    #[arg(long, env = "LOCKSTEP_LOCKER_MQTT_URL")]
    pub locker_mqtt_url: Option<String>,
    /// The realtime hub's Pusher app (`/app/{key}`, `/broadcasting/auth`
    /// signatures): id, key and secret. Unset: made on first start and
    /// kept in the database (`lockstep pusher-credentials` prints them).
    #[arg(long, env = "LOCKSTEP_PUSHER_APP_ID")]
    pub pusher_app_id: Option<String>,
    #[arg(long, env = "LOCKSTEP_PUSHER_APP_KEY")]
    pub pusher_app_key: Option<String>,
    #[arg(long, env = "LOCKSTEP_PUSHER_APP_SECRET", hide_env_values = true)]
    pub pusher_app_secret: Option<Secret>,
    /// Seconds of silence after which a WebSocket client pings (Pusher's
    /// `activity_timeout`); a client silent for twice that (at most that
    /// plus 30 s) is pinged by the hub and closed with 4201 if it does not
    /// answer.
    #[arg(long, env = "LOCKSTEP_HUB_ACTIVITY_TIMEOUT_SECS", default_value_t = 30)]
    pub hub_activity_timeout_secs: u64,
    /// Frames queued for one WebSocket connection; a live subscriber that
    /// falls this far behind is closed with 4100 and resumes.
    #[arg(long, env = "LOCKSTEP_HUB_QUEUE", default_value_t = 1024)]
    pub hub_queue: usize,
    /// WebSocket connections the hub holds at most (more are refused with
    /// 4100, so clients back off).
    #[arg(long, env = "LOCKSTEP_HUB_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub hub_max_connections: usize,
    /// Messages one WebSocket connection may send per
    /// `LOCKSTEP_HUB_RATE_WINDOW_SECS` (pings aside); more are refused
    /// with a 4301 error. 0: no limit.
    #[arg(long, env = "LOCKSTEP_HUB_RATE_LIMIT", default_value_t = 30)]
    pub hub_rate_limit: u32,
    #[arg(long, env = "LOCKSTEP_HUB_RATE_WINDOW_SECS", default_value_t = 10)]
    pub hub_rate_window_secs: u64,
    /// Relay Pusher client events (`client-…`) on private and presence
    /// channels between subscribers.
    #[arg(long, env = "LOCKSTEP_PUSHER_CLIENT_EVENTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub pusher_client_events: bool,
    /// Where Pusher webhooks go (comma-separated URLs): channel_occupied,
    /// channel_vacated, member_added, member_removed, client_event; signed
    /// with the app secret, delivered through the outbox (retried for
    /// about five minutes). Unset: none.
    #[arg(long, env = "LOCKSTEP_PUSHER_WEBHOOK_URLS")]
    pub pusher_webhook_urls: Option<String>,
    /// The shared password lockers provision with on the embedded broker
    /// (with Mosquitto it lives in the provisioning listener's password file).
    #[arg(
        long,
        env = "LOCKSTEP_PROVISIONING_PASSWORD",
        default_value = "lockstep-provisioning",
        hide_env_values = true
    )]
    pub provisioning_password: Secret,
    /// Manage locker accounts through Mosquitto's dynamic-security plugin
    /// (with MQTT_URL).
    #[arg(long, env = "MQTT_DYNSEC", action = clap::ArgAction::Set, default_value_t = true)]
    pub mqtt_dynsec: bool,
    /// Start a few simulated locker banks in-process (with the embedded
    /// broker), so there is something live to look at.
    #[arg(long, env = "LOCKSTEP_DEMO", default_value_t = false)]
    pub demo: bool,
    /// The server's MQTT client id (its persistent session).
    #[arg(long, env = "MQTT_CLIENT_ID", default_value = "lockstep-server")]
    pub mqtt_client_id: String,
    /// Seconds an open command waits for the locker before `failed/timeout`.
    #[arg(long, env = "LOCKSTEP_OPEN_TIMEOUT_SECS", default_value_t = 20)]
    pub open_timeout_secs: u64,
    /// Seconds of silence after which an online locker bank is offline.
    #[arg(long, env = "LOCKSTEP_OFFLINE_AFTER_SECS", default_value_t = 90)]
    pub offline_after_secs: u64,
    /// Hours the channel log keeps envelopes for `events/since`.
    #[arg(long, env = "LOCKSTEP_CHANNEL_RETENTION_HOURS", default_value_t = 24)]
    pub channel_retention_hours: u64,
    /// Seconds of overdue work (an outbox job due and not run, a timer due
    /// and not fired) or of a silent worker after which `/readyz` fails and
    /// the watchdog logs an error.
    #[arg(long, env = "LOCKSTEP_STALL_AFTER_SECS", default_value_t = 30)]
    pub stall_after_secs: u64,
    /// Sign-in attempts allowed per account before throttling.
    #[arg(long, env = "LOCKSTEP_LOGIN_BURST_ACCOUNT", default_value_t = 5)]
    pub login_burst_account: u32,
    /// Sign-in attempts allowed per client address before throttling.
    #[arg(long, env = "LOCKSTEP_LOGIN_BURST_IP", default_value_t = 20)]
    pub login_burst_ip: u32,
    /// Seconds after which one more sign-in attempt is allowed.
    #[arg(long, env = "LOCKSTEP_LOGIN_REFILL_SECS", default_value_t = 12)]
    pub login_refill_secs: u64,
    /// HTTP connections served at once; more wait in the listen backlog.
    #[arg(long, env = "LOCKSTEP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's head (also how long an
    /// idle keep-alive connection stays open).
    #[arg(long, env = "LOCKSTEP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request may take from its head to its answer: a body
    /// trickled slower, or a handler stuck longer, gets 408.
    #[arg(long, env = "LOCKSTEP_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Milliseconds an admin table waits after a live change before it
    /// refreshes (every change within that time costs one refresh).
    #[arg(long, env = "LOCKSTEP_TABLE_REFRESH_MS", default_value_t = 3000)]
    pub table_refresh_ms: u64,
    /// Reverse proxies (comma-separated addresses) whose
    /// `X-Forwarded-For` names the client, for the sign-in throttle and
    /// the `/metrics` address check.
    #[arg(long, env = "LOCKSTEP_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
    /// NATS (`nats://[user:password@]host:port`) between the nodes of a
    /// cluster: log wake-ups, client events and HTTP publishes, presence
    /// announcements. Unset: this node runs alone (a second node on the
    /// same database is refused). Needs PostgreSQL and MQTT_URL.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<Secret>,
    /// Seconds a node's lease lasts without renewal (renewed five times
    /// as often, at most every 2 s): a node killed outright has its
    /// presence members removed from every list within about this plus 2 s.
    #[arg(long, env = "LOCKSTEP_NODE_LEASE_SECS", default_value_t = 10)]
    pub node_lease_secs: u64,
    /// Seconds between SIGTERM and closing: `/readyz` already fails, so a
    /// load balancer stops sending new clients here first.
    #[arg(long, env = "LOCKSTEP_DRAIN_DELAY_SECS", default_value_t = 3)]
    pub drain_delay_secs: u64,
    /// Bearer token `/metrics` requires; unset, `/metrics` answers loopback
    /// clients only.
    #[arg(long, env = "LOCKSTEP_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
}

/// The limits of the HTTP layer that the router applies, and the pacing
/// it tells the pages.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// How long a request may take, from its head to its answer.
    pub request_timeout: Duration,
    /// An admin table's refresh throttle (ms).
    pub table_refresh_ms: u64,
}

impl ServeConfig {
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            table_refresh_ms: self.table_refresh_ms.clamp(100, 600_000),
        }
    }

    pub fn serve_limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            trusted_proxies: std::sync::Arc::new(
                self.trusted_proxies
                    .iter()
                    .map(|ip| ip.to_canonical())
                    .collect(),
            ),
            max_connections: self.max_connections.max(1),
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            drain: Duration::from_secs(10),
        }
    }

    /// `LOCKSTEP_PUSHER_WEBHOOK_URLS`, split.
    pub fn webhook_urls(&self) -> Vec<String> {
        self.pusher_webhook_urls
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `MQTT_URL`, when set and not blank.
    pub fn mqtt(&self) -> Option<&str> {
        self.mqtt_url
            .as_ref()
            .map(Secret::expose)
            .filter(|u| !u.trim().is_empty())
    }

    /// `NATS_URL`, when set and not blank.
    pub fn nats(&self) -> Option<&str> {
        self.nats_url
            .as_ref()
            .map(Secret::expose)
            .filter(|u| !u.trim().is_empty())
    }

    pub fn throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            per_account_burst: self.login_burst_account,
            per_ip_burst: self.login_burst_ip,
            refill: Duration::from_secs(self.login_refill_secs.max(1)),
        }
    }

    pub fn core(&self) -> lockstep_core::services::CoreSettings {
        lockstep_core::services::CoreSettings {
            open_timeout: Duration::from_secs(self.open_timeout_secs.max(1)),
            channel_retention: Duration::from_secs(self.channel_retention_hours.max(1) * 3600),
            offline_after: Duration::from_secs(self.offline_after_secs.max(1)),
            stall_after: Duration::from_secs(self.stall_after_secs.max(1)),
            ..Default::default()
        }
    }

    /// The settings tests start from: port 0, a database URL, small limits.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(database_url: &str, data_dir: PathBuf) -> Self {
        Self {
            storage: StorageArgs {
                data_dir,
                database_url: Some(database_url.to_string()),
            },
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            cookie_secure: false,
            session_hours: 1,
            admin_email: "admin@lockstep.test".into(),
            admin_password: Some(Secret::new("admin-password-123")),
            mqtt_url: None,
            mqtt: MqttMode::Off,
            mqtt_embedded_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            locker_mqtt_url: None,
            pusher_app_id: None,
            pusher_app_key: None,
            pusher_app_secret: None,
            hub_activity_timeout_secs: 30,
            hub_queue: 1024,
            hub_max_connections: 10_000,
            hub_rate_limit: 30,
            hub_rate_window_secs: 10,
            pusher_client_events: false,
            pusher_webhook_urls: None,
            provisioning_password: Secret::new("provisioning-test-password"),
            mqtt_dynsec: true,
            demo: false,
            mqtt_client_id: format!("lockstep-test-{}", uuid::Uuid::now_v7().simple()),
            open_timeout_secs: 20,
            offline_after_secs: 90,
            channel_retention_hours: 24,
            stall_after_secs: 30,
            login_burst_account: 5,
            login_burst_ip: 50,
            login_refill_secs: 60,
            max_connections: 1_000,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            table_refresh_ms: 3000,
            metrics_token: None,
            trusted_proxies: Vec::new(),
            nats_url: None,
            node_lease_secs: 10,
            drain_delay_secs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut config = ServeConfig::for_tests("sqlite://x.db", PathBuf::from("/tmp"));
        config.mqtt_url = Some(Secret::new("mqtt://lockstep:hunter2@broker:1883"));
        config.pusher_app_secret = Some(Secret::new("pusher-secret-xyz"));
        let printed = format!("{config:?}");
        for secret in [
            "hunter2",
            "pusher-secret-xyz",
            "admin-password-123",
            "provisioning-test-password",
        ] {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        assert!(printed.contains("[redacted]"));
    }
}
