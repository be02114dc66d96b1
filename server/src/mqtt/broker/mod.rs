//! Lockstep's in-process MQTT 3.1.1 broker, the embedded default: what
//! `lockstep serve` runs when no `MQTT_URL` is set.
//!
//! It holds lockers to the same rules as the Mosquitto setup in
//! `deploy/mosquitto` (rumqttd, used before, has no per-client topic
//! rules and closes a refused login without a CONNACK code):
//! - every login is checked ([`Authenticator`]) and a refusal answered
//!   with CONNACK 0x05 (0x01 for another protocol level, 0x02 for an empty
//!   client id with a persistent session);
//! - every publish and subscription is checked against the client's
//!   [`Role`] ([`acl`]); a refused publish is acknowledged and dropped, as
//!   Mosquitto does, a refused subscription gets 0x80 in its SUBACK;
//! - packets over `max_packet` close the connection;
//! - each refusal is logged with the client, topic and reason, and counted
//!   in `lockstep_rejections_total`;
//! - persistent sessions (clean session off) keep subscriptions and QoS 1
//!   messages while a client is offline (in memory: a server restart loses
//!   them), shared subscriptions (`$share/{group}/…`) give each message to
//!   one member, retained messages and wills work as in the spec;
//! - an account disabled by the server is disconnected at once
//!   ([`Broker::kick`]).
//!
//! QoS 2 is taken from clients and delivered as QoS 1.

pub mod acl;
mod connection;
mod router;
pub mod topic;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::sync::Semaphore;

pub use acl::Role;
use router::Router;

use crate::metrics::count_rejection;

/// Decides who a login is.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The role of `client_id` logging in with these credentials, or
    /// `None` to refuse it.
    async fn login(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Option<Role>;
}

/// The broker's bounds.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest packet taken (Mosquitto's `max_packet_size` in
    /// deploy/mosquitto is the same).
    pub max_packet: usize,
    /// QoS 1 messages sent to one client and not yet acknowledged.
    pub max_inflight: usize,
    /// Messages held for one client beyond those (Mosquitto's
    /// `max_queued_messages`).
    pub max_queued: usize,
    pub max_connections: usize,
    /// Time a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet: 64 * 1024,
            max_inflight: 100,
            max_queued: 10_000,
            max_connections: 19_000,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What every connection shares.
struct Shared {
    router: Router,
    auth: Arc<dyn Authenticator>,
    /// Logins checked at once (each may read the database): a flood of
    /// CONNECTs waits here instead of draining the pool the API uses.
    logins: Semaphore,
    limits: Limits,
}

/// The longest a login check may take.
const LOGIN_DEADLINE: Duration = Duration::from_secs(5);

impl Shared {
    async fn login(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Role, &'static str> {
        let checked = tokio::time::timeout(LOGIN_DEADLINE, async {
            let _slot = self.logins.acquire().await.map_err(|_| "shutting down")?;
            self.auth
                .login(client_id, username, password)
                .await
                .ok_or("bad login")
        });
        checked.await.unwrap_or(Err("login check took too long"))
    }
}

/// A running broker.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("addr", &self.addr).finish()
    }
}

impl Broker {
    /// Serves `listener` on the current Tokio runtime until the process
    /// ends.
    pub fn start(
        listener: tokio::net::TcpListener,
        auth: Arc<dyn Authenticator>,
        limits: Limits,
    ) -> std::io::Result<Broker> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            router: Router::new(limits.max_queued),
            auth,
            logins: Semaphore::new(32),
            limits,
        });
        let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
        let accepting = shared.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "embedded MQTT broker: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "embedded MQTT broker: connection limit reached");
                    count_rejection("mqtt_too_many_connections");
                    drop(stream);
                    continue;
                };
                let shared = accepting.clone();
                tokio::spawn(async move {
                    connection::serve(stream, peer, shared).await;
                    drop(slot);
                });
            }
        });
        Ok(Broker { shared, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Disconnects `client_id` now and forgets its session (its account
    /// was disabled); true if it was connected.
    pub fn kick(&self, client_id: &str) -> bool {
        self.shared.router.kick(client_id, "account disabled")
    }
}
