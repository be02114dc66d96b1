//! The in-process MQTT broker of the default setup (rumqttd), so that
//! `lockstep serve` works with no Mosquitto around.
//!
//! Logins are checked through the server: the bridge's own per-process
//! secret, the shared `provisioning` account, and each locker's account
//! (`locker-{bank_id}`, only with that same client id, against the stored
//! hash). What rumqttd cannot do, and this broker therefore does not
//! enforce: per-client ACLs (any logged-in client may subscribe to any
//! topic, including other lockers' commands and provisioning replies) and
//! kicking a connected client whose account was just disabled (it is
//! refused at its next login). Production runs Mosquitto with
//! `deploy/mosquitto`; see docs/mqtt.md.

use std::{collections::HashMap, net::SocketAddr};

use lockstep_core::{provisioning, Services};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};

use crate::metrics::count_rejection;

/// The shared account lockers provision with.
pub const PROVISIONING_USER: &str = "provisioning";
/// The bridge's account on the embedded broker.
pub const BRIDGE_USER: &str = "lockstep";

/// A running embedded broker and how the bridge logs in to it.
#[derive(Clone, Debug)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub bridge_password: String,
    pub provisioning_password: String,
}

/// What the embedded broker does not enforce, said once at start.
pub const LIMITS: &str = "embedded MQTT broker: logins are checked, but there are no per-client \
ACLs (a logged-in client may read any topic) and a disabled locker stays connected until it \
reconnects; run Mosquitto with deploy/mosquitto in production";

/// Starts the broker on its own threads; fails at once when `addr` is taken.
pub fn start(
    addr: SocketAddr,
    provisioning_password: String,
    services: Services,
) -> Result<EmbeddedBroker, String> {
    // rumqttd binds inside its own thread and takes no listener, so it
    // cannot report the port it got for port 0. Bind here first: a taken
    // port is a clear start-up error rather than a log line, and port 0
    // becomes a free port, handed to rumqttd (which binds it a moment
    // later; another process could take it in between).
    let probe = std::net::TcpListener::bind(addr).map_err(|e| {
        format!("cannot start the embedded MQTT broker on {addr}: {e}; choose another with --mqtt-embedded-addr / MQTT_EMBEDDED_ADDR, or set MQTT_URL")
    })?;
    let addr = probe
        .local_addr()
        .map_err(|e| format!("cannot start the embedded MQTT broker on {addr}: {e}"))?;
    drop(probe);
    let bridge_password = lockstep_core::identity::tokens::random_secret("", 40);
    let runtime = tokio::runtime::Handle::current();
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 20 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let bridge_secret = bridge_password.clone();
    let provisioning_secret = provisioning_password.clone();
    connections.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let services = services.clone();
            let runtime = runtime.clone();
            let bridge_secret = bridge_secret.clone();
            let provisioning_password = provisioning_password.clone();
            async move {
                // The check runs on the server's runtime (where the pool lives).
                let check = runtime.spawn(async move {
                let ok = match username.as_str() {
                    BRIDGE_USER => lockstep_core::identity::tokens::same_secret(&password, &bridge_secret),
                    PROVISIONING_USER => {
                        lockstep_core::identity::tokens::same_secret(&password, &provisioning_password)
                    }
                    u if u.starts_with("locker-") => {
                        provisioning::check_locker_login(&services, &client_id, u, &password)
                            .await
                            .unwrap_or_else(|e| {
                                tracing::error!(error = %e, "checking a locker login failed");
                                false
                            })
                    }
                    _ => false,
                };
                if !ok {
                    tracing::warn!(%client_id, %username, "embedded MQTT broker refused a login");
                    count_rejection("mqtt_login_refused");
                }
                ok
            });
                check.await.unwrap_or(false)
            }
        },
    );
    let server = ServerSettings {
        name: "lockstep".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 19_000,
            max_outgoing_packet_count: 200,
            // Each subscription filter keeps its messages in a log of
            // segments, in memory, until the oldest is dropped when the log
            // is full; nothing frees a segment earlier, and a subscriber
            // further behind than the log skips ahead. The per-locker
            // filters (its commands, its provisioning reply), a thousand of
            // them, each read at once by its one locker, get 2 x 1 KB (a
            // few commands; they expire in seconds anyway); the server's own filters, carrying every
            // locker's results and heartbeats, get 2 x 256 KB: about a
            // minute of results and three of heartbeats at 1,000 lockers,
            // longer than an open waits for its result. A segment's size
            // counts payload bytes only; in memory a message costs several
            // times that (a stored message keeps its connection's read
            // buffer alive), so 10 x 1 MB, and even 2 x 4 KB per locker,
            // grew the process for the whole of a 15-minute soak
            // (docs/benchmarks.md).
            max_segment_size: 1024,
            max_segment_count: 2,
            custom_segment: Some(
                super::inbound_filters(false)
                    .into_iter()
                    .map(|f| {
                        (
                            f,
                            SegmentConfig {
                                max_segment_size: 256 * 1024,
                                max_segment_count: 2,
                            },
                        )
                    })
                    .collect(),
            ),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(|e| format!("cannot start the embedded MQTT broker: {e}"))?;
    tracing::warn!("{LIMITS}");
    tracing::info!(%addr, "embedded MQTT broker listening");
    Ok(EmbeddedBroker {
        addr,
        bridge_password,
        provisioning_password: provisioning_secret,
    })
}
