//! The embedded default's broker, set up: [`super::broker`] on
//! `MQTT_EMBEDDED_ADDR`, with the logins it knows: the bridge's own
//! per-process secret, the shared `provisioning` account, and each
//! locker's account (`locker-{bank_id}`, only with that same client id,
//! against the stored hash, refused once disabled).

use std::{net::SocketAddr, sync::Arc};

use async_trait::async_trait;
use lockstep_core::{identity::tokens::same_secret, provisioning, Services};

use super::broker::{Authenticator, Broker, Limits, Role};

/// The shared account lockers provision with.
pub const PROVISIONING_USER: &str = "provisioning";
/// The bridge's account on the embedded broker.
pub const BRIDGE_USER: &str = "lockstep";

/// A running embedded broker and how the bridge logs in to it.
#[derive(Clone)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub bridge_password: String,
    pub provisioning_password: String,
    pub broker: Broker,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The logins of the embedded broker.
struct Logins {
    services: Services,
    bridge_secret: String,
    provisioning_secret: String,
}

#[async_trait]
impl Authenticator for Logins {
    async fn login(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Option<Role> {
        let (user, password) = (username?, password?);
        match user {
            BRIDGE_USER => same_secret(password, &self.bridge_secret).then_some(Role::Bridge),
            PROVISIONING_USER => {
                same_secret(password, &self.provisioning_secret).then_some(Role::Provisioning)
            }
            u => {
                let bank = u
                    .strip_prefix("locker-")
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())?;
                match provisioning::check_locker_login(&self.services, client_id, u, password).await
                {
                    Ok(true) => Some(Role::Locker(bank)),
                    Ok(false) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "checking a locker login failed");
                        None
                    }
                }
            }
        }
    }
}

/// Starts the broker on `addr` (port 0: a free port) on the current
/// runtime; fails at once when `addr` is taken.
pub fn start(
    addr: SocketAddr,
    provisioning_password: String,
    services: Services,
) -> Result<EmbeddedBroker, String> {
    let taken = |e: std::io::Error| {
        format!("cannot start the embedded MQTT broker on {addr}: {e}; choose another with --mqtt-embedded-addr / MQTT_EMBEDDED_ADDR, or set MQTT_URL")
    };
    let listener = std::net::TcpListener::bind(addr).map_err(taken)?;
    listener.set_nonblocking(true).map_err(taken)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(taken)?;
    let bridge_password = lockstep_core::identity::tokens::random_secret("", 40);
    let logins = Logins {
        services,
        bridge_secret: bridge_password.clone(),
        provisioning_secret: provisioning_password.clone(),
    };
    let broker = Broker::start(listener, Arc::new(logins), Limits::default()).map_err(taken)?;
    let addr = broker.addr();
    tracing::info!(%addr, "embedded MQTT broker listening");
    Ok(EmbeddedBroker {
        addr,
        bridge_password,
        provisioning_password,
        broker,
    })
}
