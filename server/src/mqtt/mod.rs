//! The MQTT bridge to the lockers (rumqttc, MQTT 3.1.1): the real
//! [`LockerGateway`] and the inbound status handler.
//!
//! - Commands go to `locker/{bank_id}/command` at QoS 1; `send_open`
//!   returns once the broker's PUBACK for that very publish arrived (the
//!   reactor then records `sent`), or fails after `ack_timeout` (the outbox
//!   retries; lockers deduplicate by `command_id`).
//! - Heartbeats come from `$share/lockstep/locker/+/state`: they move the
//!   bank's `last_seen`; only online/offline transitions are events.
//! - Results come from `$share/lockstep/locker/+/status` (a shared
//!   subscription, so several server processes split them) and go to
//!   `opens::record_result`. Anything malformed, on a wrong topic, or for a
//!   command of another locker is refused, logged with its reason and
//!   counted; nothing panics.
//! - The session is persistent (clean session off) and the connection is
//!   retried with backoff; subscriptions are renewed on every CONNACK.

pub mod payloads;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use lockstep_core::{
    now_ms, opens,
    reactors::{GatewayError, LockerGateway, OpenCommand},
    Services,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::oneshot;

use crate::metrics::count_rejection;
use payloads::{parse_status, parse_topic, CommandPayload, CommandResult, VERSION};

pub const STATUS_FILTER: &str = "$share/lockstep/locker/+/status";
pub const STATE_FILTER: &str = "$share/lockstep/locker/+/state";

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    /// How long `send_open` waits for the broker's PUBACK.
    pub ack_timeout: Duration,
}

/// Parses `mqtt://[user[:password]@]host[:port]`.
pub fn parse_url(url: &str, client_id: &str) -> Result<MqttConfig, String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| {
            format!("MQTT_URL must look like mqtt://[user[:password]@]host[:port], got {url:?}")
        })?;
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((auth, hp)) => (Some(auth), hp),
        None => (None, rest),
    };
    let (username, password) = match auth.map(|a| {
        a.split_once(':')
            .map(|(u, p)| (u, Some(p)))
            .unwrap_or((a, None))
    }) {
        Some((u, p)) => (Some(u.to_string()), p.map(str::to_string)),
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("MQTT_URL has a bad port {p:?}"))?,
        ),
        None => (hostport, 1883),
    };
    if host.is_empty() {
        return Err("MQTT_URL has no host".into());
    }
    Ok(MqttConfig {
        host: host.to_string(),
        port,
        username,
        password,
        client_id: client_id.to_string(),
        ack_timeout: Duration::from_secs(10),
    })
}

/// Publishes waiting for their packet id, then for their PUBACK.
#[derive(Default)]
struct Pending {
    queued: VecDeque<oneshot::Sender<()>>,
    by_pkid: HashMap<u16, oneshot::Sender<()>>,
}

pub struct MqttGateway {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    publish_order: tokio::sync::Mutex<()>,
    ack_timeout: Duration,
}

#[async_trait]
impl LockerGateway for MqttGateway {
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError> {
        let payload = CommandPayload {
            v: VERSION,
            command_id: command.command_id,
            action: "open".into(),
            compartment: command.compartment,
            issued_at: command.issued_at,
            expires_at: command.expires_at,
        };
        let bytes = serde_json::to_vec(&payload).map_err(|e| GatewayError(e.to_string()))?;
        let topic = format!("locker/{}/command", command.locker_bank_id);
        let (acked, ack) = oneshot::channel();
        {
            // The event loop reports publishes in the order they were
            // queued; holding this lock keeps `queued` in that same order.
            let _order = self.publish_order.lock().await;
            self.pending
                .lock()
                .map_err(|_| GatewayError("poisoned".into()))?
                .queued
                .push_back(acked);
            if let Err(e) = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, bytes)
                .await
            {
                if let Ok(mut p) = self.pending.lock() {
                    p.queued.pop_back();
                }
                return Err(GatewayError(format!("the MQTT client is gone: {e}")));
            }
        }
        match tokio::time::timeout(self.ack_timeout, ack).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(GatewayError(format!(
                "no PUBACK from the broker within {:?}",
                self.ack_timeout
            ))),
        }
    }
}

/// Connects (in the background) and returns the gateway and the task that
/// drives the connection.
pub fn start(
    config: MqttConfig,
    services: Services,
) -> (Arc<MqttGateway>, tokio::task::JoinHandle<()>) {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(15));
    options.set_clean_session(false);
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    let (client, eventloop) = AsyncClient::new(options, 256);
    let pending = Arc::new(Mutex::new(Pending::default()));
    let gateway = Arc::new(MqttGateway {
        client: client.clone(),
        pending: pending.clone(),
        publish_order: tokio::sync::Mutex::new(()),
        ack_timeout: config.ack_timeout,
    });
    tracing::info!(host = %config.host, port = config.port, client_id = %config.client_id, "MQTT bridge starting");
    let task = tokio::spawn(drive(client, eventloop, pending, services));
    (gateway, task)
}

async fn drive(
    client: AsyncClient,
    mut eventloop: EventLoop,
    pending: Arc<Mutex<Pending>>,
    services: Services,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(200);
                tracing::info!(session_present = ack.session_present, "MQTT connected");
                for filter in [STATUS_FILTER, STATE_FILTER] {
                    if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!(error = %e, filter, "subscribing failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                handle_publish(&services, &p.topic, &p.payload).await
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Ok(mut p) = pending.lock() {
                    // A packet id already waiting is a retransmission.
                    if !p.by_pkid.contains_key(&pkid) {
                        if let Some(waiter) = p.queued.pop_front() {
                            p.by_pkid.insert(pkid, waiter);
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(waiter) = pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.by_pkid.remove(&ack.pkid))
                {
                    let _ = waiter.send(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost; reconnecting");
                metrics::counter!("lockstep_mqtt_disconnects_total").increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn refuse(topic: &str, reason: &'static str, detail: &dyn std::fmt::Display) {
    tracing::warn!(topic = %topic.chars().take(200).collect::<String>(), reason, %detail, "MQTT message refused");
    count_rejection(reason);
}

/// One inbound message on a locker topic.
pub async fn handle_publish(services: &Services, topic: &str, payload: &[u8]) {
    let bank_id = match parse_topic(topic) {
        Ok((bank_id, "status")) => bank_id,
        Ok((bank_id, "state")) => return handle_state(services, topic, bank_id, payload).await,
        Ok((_, _)) => return refuse(topic, "mqtt_bad_topic", &"not a status or state topic"),
        Err(e) => return refuse(topic, e.reason(), &e),
    };
    let status = match parse_status(payload) {
        Ok(s) => s,
        Err(e) => return refuse(topic, e.reason(), &e),
    };
    let span = tracing::info_span!("locker_result", command_id = %status.command_id, %bank_id);
    let _enter = span.enter();
    match opens::bank_of(services, status.command_id).await {
        Ok(Some(owner)) if owner == bank_id => {}
        Ok(Some(_)) => {
            return refuse(
                topic,
                "mqtt_wrong_locker",
                &"the command belongs to another locker",
            )
        }
        Ok(None) => return refuse(topic, "mqtt_unknown_command", &status.command_id),
        Err(e) => {
            tracing::error!(error = %e, "looking up the command failed");
            return;
        }
    }
    let success = status.result == CommandResult::ActionCompleted;
    match opens::record_result(services, status.command_id, success, status.error, now_ms()).await {
        Ok(outcome) => tracing::info!(?outcome, success, "locker result"),
        Err(e) => tracing::error!(error = %e, "recording the locker result failed"),
    }
}

/// A heartbeat: the bank's `last_seen` moves; silence ends it offline.
async fn handle_state(services: &Services, topic: &str, bank_id: uuid::Uuid, payload: &[u8]) {
    if let Err(e) = payloads::parse_state(payload) {
        return refuse(topic, e.reason(), &e);
    }
    match lockstep_core::lockers::heartbeat(services, bank_id, now_ms()).await {
        Ok(Some(_)) => {}
        Ok(None) => refuse(topic, "mqtt_unknown_locker", &bank_id),
        Err(e) => tracing::error!(error = %e, %bank_id, "recording a heartbeat failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls_parse_with_and_without_credentials() {
        let c = parse_url("mqtt://bridge:s3cret@broker.local:1884", "id").expect("valid");
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.username.as_deref(),
                c.password.as_deref()
            ),
            ("broker.local", 1884, Some("bridge"), Some("s3cret"))
        );
        let c = parse_url("mqtt://127.0.0.1", "id").expect("valid");
        assert_eq!((c.port, c.username), (1883, None));
        assert!(parse_url("http://x", "id").is_err());
        assert!(parse_url("mqtt://host:notaport", "id").is_err());
        assert!(parse_url("mqtt://", "id").is_err());
    }
}
