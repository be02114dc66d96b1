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
//! - Registrations come from `$share/lockstep/provisioning/register` and
//!   run `provisioning::provision` (bounded concurrency); the locker's
//!   broker account is made through Mosquitto's dynamic-security plugin
//!   (`$CONTROL/dynamic-security/v1`, answers matched by correlationData)
//!   when `dynsec` is on, and the reply goes to
//!   `provisioning/{client_id}/reply` at QoS 1.
//! - The session is persistent (clean session off) and the connection is
//!   retried with backoff; subscriptions are renewed on every CONNACK.

pub mod broker;
pub mod embedded;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use lockstep_core::{
    gateway::{GatewayError, LockerAccount, LockerGateway, OpenCommand},
    lockers::{CompartmentReport, NewCompartment},
    now_ms, opens,
    provisioning::{self, ProvisioningFailure, Registration},
    Services,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::metrics::count_rejection;
use lockstep_wire::mqtt::{
    self as wire, parse_register, parse_status,
    topics::{
        self, LockerTopic, DYNSEC as DYNSEC_TOPIC, DYNSEC_RESPONSE as DYNSEC_RESPONSE_TOPIC,
        REGISTER as REGISTER_TOPIC,
    },
    CommandAction, CommandPayload, CommandResult, VERSION,
};

/// What the server subscribes to: every locker's results and heartbeats,
/// and the registrations; through the shared group `$share/lockstep/` when
/// `shared` (so several processes split them).
pub fn inbound_filters(shared: bool) -> Vec<String> {
    let group = if shared { topics::SHARE_GROUP } else { "" };
    [
        topics::every_locker(LockerTopic::Status),
        topics::every_locker(LockerTopic::State),
        REGISTER_TOPIC.to_string(),
    ]
    .into_iter()
    .map(|f| format!("{group}{f}"))
    .collect()
}
/// Registrations handled at once (each is a few short transactions and
/// one dynamic-security round trip).
const PROVISIONING_CONCURRENCY: usize = 16;
/// Inbound results and heartbeats handled at once.
const INBOUND_CONCURRENCY: usize = 64;
/// Registrations allowed to wait for a slot; beyond that they are refused
/// (and the locker asks again later).
const PROVISIONING_QUEUE: usize = 20_000;
/// The largest packet the bridge reads: above every broker's own limit
/// (64 KiB, Mosquitto from deploy/mosquitto and the embedded broker alike),
/// so whatever a broker delivers is read, refused by the payload parser
/// (`mqtt_oversize`, over `MAX_PAYLOAD`) and acknowledged. A smaller limit
/// here made an oversize result a poison message: the client dropped the
/// connection, the broker redelivered it to the persistent session on
/// reconnect, and the bridge never got past it.
pub const MAX_INBOUND_PACKET: usize = 1024 * 1024;

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
    /// Manage locker accounts through Mosquitto's dynamic-security plugin.
    pub dynsec: bool,
    /// Subscribe through `$share/lockstep/...` so several server processes
    /// split the inbound messages (off for the embedded broker, which has
    /// one server).
    pub shared: bool,
    /// The embedded broker, when it is the one: a disabled locker account
    /// is disconnected through it.
    pub embedded: Option<broker::Broker>,
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
        dynsec: true,
        shared: true,
        embedded: None,
    })
}

/// Publishes waiting for their packet id, then for their PUBACK. Every
/// publish through the client has its place in `queued` (`None` when
/// nobody waits for its PUBACK), because the event loop names packet ids
/// in the order publishes were queued: a publish missing here would hand
/// its packet id to the next one's waiter.
#[derive(Default)]
struct Pending {
    queued: VecDeque<Option<oneshot::Sender<()>>>,
    by_pkid: HashMap<u16, oneshot::Sender<()>>,
}

impl Pending {
    /// Queues a QoS 1 publish nobody waits for (a result's ack).
    fn publish_unwaited(
        pending: &Mutex<Pending>,
        client: &AsyncClient,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        let mut pending = pending.lock().map_err(|_| "poisoned".to_string())?;
        client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| e.to_string())?;
        pending.queued.push_back(None);
        Ok(())
    }
}

/// Dynamic-security requests waiting for their response, by correlationData.
type DynsecWaiters = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<Value>>>>>;

pub struct MqttGateway {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    dynsec_waiters: DynsecWaiters,
    ack_timeout: Duration,
    dynsec: bool,
    embedded: Option<broker::Broker>,
}

/// The ACLs of a locker's own role: its state and status out, its
/// commands in, nothing else.
fn locker_acls(bank_id: uuid::Uuid) -> Value {
    let t = |kind: &str, topic: String| json!({"acltype": kind, "topic": topic, "allow": true, "priority": 0});
    json!([
        t(
            "publishClientSend",
            topics::locker(bank_id, LockerTopic::State)
        ),
        t(
            "publishClientSend",
            topics::locker(bank_id, LockerTopic::Status)
        ),
        t(
            "subscribeLiteral",
            topics::locker(bank_id, LockerTopic::Command)
        ),
        t(
            "publishClientReceive",
            topics::locker(bank_id, LockerTopic::Command)
        ),
        t(
            "unsubscribeLiteral",
            topics::locker(bank_id, LockerTopic::Command)
        ),
        t(
            "subscribeLiteral",
            topics::locker(bank_id, LockerTopic::Ack)
        ),
        t(
            "publishClientReceive",
            topics::locker(bank_id, LockerTopic::Ack)
        ),
        t(
            "unsubscribeLiteral",
            topics::locker(bank_id, LockerTopic::Ack)
        ),
    ])
}

impl MqttGateway {
    /// Sends dynamic-security commands and returns their responses.
    async fn dynsec(&self, mut commands: Vec<Value>) -> Result<Vec<Value>, GatewayError> {
        let correlation = uuid::Uuid::now_v7().to_string();
        for c in &mut commands {
            c["correlationData"] = json!(correlation);
        }
        let (tx, rx) = oneshot::channel();
        self.dynsec_waiters
            .lock()
            .map_err(|_| GatewayError("poisoned".into()))?
            .insert(correlation.clone(), tx);
        let body = serde_json::to_vec(&json!({ "commands": commands }))
            .map_err(|e| GatewayError(e.to_string()))?;
        let sent = self.publish_acked(DYNSEC_TOPIC.to_string(), body).await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(self.ack_timeout, rx).await,
            Err(e) => {
                self.forget_waiter(&correlation);
                return Err(e);
            }
        };
        match answer {
            Ok(Ok(responses)) => Ok(responses),
            _ => {
                self.forget_waiter(&correlation);
                Err(GatewayError(format!(
                    "no answer from the broker's dynamic-security plugin within {:?}",
                    self.ack_timeout
                )))
            }
        }
    }

    fn forget_waiter(&self, correlation: &str) {
        if let Ok(mut w) = self.dynsec_waiters.lock() {
            w.remove(correlation);
        }
    }

    /// Publishes at QoS 1 and returns once that very publish was PUBACKed.
    /// Never waits while holding a lock: the publish is queued with
    /// `try_publish` (a full client queue is an error the outbox retries),
    /// and the wait for the PUBACK is bounded by `ack_timeout`.
    async fn publish_acked(&self, topic: String, bytes: Vec<u8>) -> Result<(), GatewayError> {
        let (acked, ack) = oneshot::channel();
        {
            // The event loop reports publishes in the order they were
            // queued; queueing under this lock keeps `queued` in that order.
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| GatewayError("poisoned".into()))?;
            if let Err(e) = self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, bytes)
            {
                metrics::counter!("lockstep_mqtt_publish_refused_total").increment(1);
                return Err(GatewayError(format!(
                    "the MQTT client could not queue the publish: {e}"
                )));
            }
            pending.queued.push_back(Some(acked));
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

/// The error of a dynamic-security response, if any.
fn dynsec_error(response: &Value) -> Option<&str> {
    response.get("error").and_then(Value::as_str)
}

#[async_trait]
impl LockerGateway for MqttGateway {
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError> {
        let payload = CommandPayload {
            v: VERSION,
            command_id: command.command_id,
            action: CommandAction::Open,
            compartment: command.compartment,
            issued_at: command.issued_at,
            expires_at: command.expires_at,
        };
        let bytes = serde_json::to_vec(&payload).map_err(|e| GatewayError(e.to_string()))?;
        count_message("out", "command");
        self.publish_acked(
            topics::locker(command.locker_bank_id, LockerTopic::Command),
            bytes,
        )
        .await
    }

    async fn create_account(&self, account: &LockerAccount) -> Result<(), GatewayError> {
        if !self.dynsec {
            // The embedded broker checks logins against the stored hash.
            return Ok(());
        }
        let name = &account.username;
        let responses = self
            .dynsec(vec![
                json!({"command": "createRole", "rolename": name, "acls": locker_acls(account.bank_id)}),
                json!({"command": "createClient", "username": name, "password": account.password,
                       "clientid": name, "roles": [{"rolename": name}]}),
            ])
            .await?;
        let errors: Vec<&str> = responses.iter().filter_map(dynsec_error).collect();
        let client_exists = errors.contains(&"Client already exists");
        if let Some(other) = errors
            .iter()
            .find(|e| **e != "Client already exists" && **e != "Role already exists")
        {
            return Err(GatewayError(format!("dynamic security refused: {other}")));
        }
        if client_exists {
            // A retried registration: same account, fresh secret.
            let responses = self
                .dynsec(vec![
                    json!({"command": "setClientPassword", "username": name, "password": account.password}),
                    json!({"command": "enableClient", "username": name}),
                ])
                .await?;
            if let Some(e) = responses.iter().find_map(dynsec_error) {
                return Err(GatewayError(format!("dynamic security refused: {e}")));
            }
        }
        Ok(())
    }

    async fn disable_account(&self, username: &str) -> Result<(), GatewayError> {
        if !self.dynsec {
            // The embedded broker refuses the account's next login (the
            // core marked it disabled); a live connection is closed now.
            if let Some(broker) = &self.embedded {
                if broker.kick(username) {
                    tracing::info!(%username, "disconnected a disabled locker account");
                }
            }
            return Ok(());
        }
        let responses = self
            .dynsec(vec![
                json!({"command": "disableClient", "username": username}),
            ])
            .await?;
        match responses.iter().find_map(dynsec_error) {
            None | Some("Client not found") => Ok(()),
            Some(e) => Err(GatewayError(format!("dynamic security refused: {e}"))),
        }
    }

    async fn deliver_reply(&self, client_id: &str, reply: &[u8]) -> Result<(), GatewayError> {
        if !wire::valid_client_id(client_id) {
            return Err(GatewayError("not a usable client id".into()));
        }
        count_message("out", "reply");
        self.publish_acked(topics::provisioning_reply(client_id), reply.to_vec())
            .await
    }
}

/// The connection, ready to be driven once the services (which must hold
/// this bridge's gateway) exist.
pub struct Connection {
    bridge: Bridge,
    eventloop: EventLoop,
}

impl Connection {
    /// Drives the connection with `services` (whose gateway is this
    /// bridge) until `shutdown` turns true; then says DISCONNECT to the
    /// broker (so its session is kept and nothing is published as a will)
    /// and returns.
    pub async fn run(self, services: Services, shutdown: watch::Receiver<bool>) {
        let mut bridge = self.bridge;
        bridge.services = Some(services);
        drive(bridge, self.eventloop, shutdown).await
    }
}

/// Creates the client and its gateway; nothing moves until
/// [`Connection::run`].
pub fn start(config: MqttConfig) -> (Arc<MqttGateway>, Connection) {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(15));
    options.set_clean_session(false);
    options.set_max_packet_size(MAX_INBOUND_PACKET, MAX_INBOUND_PACKET);
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    // Small packets both ways: no Nagle delay on commands and PUBACKs.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let pending = Arc::new(Mutex::new(Pending::default()));
    let dynsec_waiters = DynsecWaiters::default();
    let gateway = Arc::new(MqttGateway {
        client: client.clone(),
        pending: pending.clone(),
        dynsec_waiters: dynsec_waiters.clone(),
        ack_timeout: config.ack_timeout,
        dynsec: config.dynsec,
        embedded: config.embedded.clone(),
    });
    tracing::info!(host = %config.host, port = config.port, client_id = %config.client_id, dynsec = config.dynsec, "MQTT bridge starting");
    let bridge = Bridge {
        client,
        pending,
        dynsec_waiters,
        dynsec: config.dynsec,
        shared: config.shared,
        services: None,
        provisioning: Arc::new(tokio::sync::Semaphore::new(PROVISIONING_CONCURRENCY)),
    };
    (gateway, Connection { bridge, eventloop })
}

/// What the connection task holds.
struct Bridge {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    dynsec_waiters: DynsecWaiters,
    dynsec: bool,
    shared: bool,
    services: Option<Services>,
    provisioning: Arc<tokio::sync::Semaphore>,
}

async fn drive(bridge: Bridge, mut eventloop: EventLoop, mut shutdown: watch::Receiver<bool>) {
    let Bridge {
        client,
        pending,
        dynsec_waiters,
        dynsec,
        shared,
        services,
        provisioning,
    } = bridge;
    let Some(services) = services else {
        tracing::error!("the MQTT bridge was started without services");
        return;
    };
    let waiting = Arc::new(AtomicUsize::new(0));
    let inbound = Arc::new(tokio::sync::Semaphore::new(INBOUND_CONCURRENCY));
    let in_flight: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let mut backoff = Duration::from_millis(200);
    let mut connected_once = false;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = stopped(&mut shutdown) => {
                let _ = client.try_disconnect();
                let flushed = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        match eventloop.poll().await {
                            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                });
                let _ = flushed.await;
                tracing::info!("MQTT bridge stopped");
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(200);
                tracing::info!(session_present = ack.session_present, "MQTT connected");
                metrics::gauge!("lockstep_mqtt_connected").set(1.0);
                if connected_once {
                    metrics::counter!("lockstep_mqtt_reconnects_total").increment(1);
                }
                connected_once = true;
                let mut filters = inbound_filters(shared);
                if dynsec {
                    filters.push(DYNSEC_RESPONSE_TOPIC.to_string());
                }
                for filter in filters {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, %filter, "subscribing failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == DYNSEC_RESPONSE_TOPIC => {
                route_dynsec_response(&dynsec_waiters, &p.payload)
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == REGISTER_TOPIC => {
                count_message("in", "registration");
                // Queued (bounded), run a few at a time.
                if waiting.load(Ordering::Relaxed) >= PROVISIONING_QUEUE {
                    refuse(
                        &p.topic,
                        "mqtt_provisioning_busy",
                        &"too many registrations waiting",
                    );
                    continue;
                }
                let reg = match parse_register(&p.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        refuse(REGISTER_TOPIC, e.reason(), &e);
                        continue;
                    }
                };
                // A locker asking again while its first request still
                // waits gets that one's answer: drop the repeat.
                let client_id = reg.client_id.clone();
                let fresh = in_flight
                    .lock()
                    .map(|mut f| f.insert(client_id.clone()))
                    .unwrap_or(true);
                if !fresh {
                    metrics::counter!("lockstep_provisioning_repeats_total").increment(1);
                    continue;
                }
                waiting.fetch_add(1, Ordering::Relaxed);
                let (services, provisioning, waiting, in_flight) = (
                    services.clone(),
                    provisioning.clone(),
                    waiting.clone(),
                    in_flight.clone(),
                );
                tokio::spawn(async move {
                    let permit = provisioning.acquire_owned().await;
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    if permit.is_ok() {
                        handle_register(&services, reg).await;
                    }
                    if let Ok(mut f) = in_flight.lock() {
                        f.remove(&client_id);
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // Off the event loop (which must keep reading PUBACKs), a
                // bounded number at a time; at the bound the loop waits.
                let Ok(permit) = inbound.clone().acquire_owned().await else {
                    continue;
                };
                let services = services.clone();
                let (client, pending) = (client.clone(), pending.clone());
                tokio::spawn(async move {
                    // Bounded, so a stuck handler cannot keep its slot (and
                    // at the bound, the event loop) for good.
                    let deadline = services.settings.job_deadline;
                    let handled = handle_publish(&services, &p.topic, &p.payload);
                    match tokio::time::timeout(deadline, handled).await {
                        Ok(Some(ack)) => {
                            // Not waited for: a lost ack costs one repeat
                            // of the result, which is harmless.
                            count_message("out", "ack");
                            if let Err(e) =
                                Pending::publish_unwaited(&pending, &client, ack.topic, ack.payload)
                            {
                                tracing::warn!(error = %e, "could not queue a result's ack; the locker will repeat the result");
                                metrics::counter!("lockstep_mqtt_publish_refused_total")
                                    .increment(1);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => refuse(
                            &p.topic,
                            "mqtt_handler_timeout",
                            &"handling ran past its deadline",
                        ),
                    }
                    drop(permit);
                });
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Ok(mut p) = pending.lock() {
                    // A packet id already waiting is a retransmission.
                    if !p.by_pkid.contains_key(&pkid) {
                        if let Some(Some(waiter)) = p.queued.pop_front() {
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
                metrics::gauge!("lockstep_mqtt_connected").set(0.0);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Counts one MQTT message: `direction` in or out, `kind` command, result,
/// state, registration or reply.
fn count_message(direction: &'static str, kind: &'static str) {
    metrics::counter!("lockstep_mqtt_messages_total", "direction" => direction, "kind" => kind)
        .increment(1);
}

/// Completes once `shutdown` is true (the guard `wait_for` returns is
/// dropped here, so callers' futures stay `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn route_dynsec_response(waiters: &DynsecWaiters, payload: &[u8]) {
    let responses = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("responses").and_then(Value::as_array).cloned());
    let Some(responses) = responses else {
        return refuse(
            DYNSEC_RESPONSE_TOPIC,
            "mqtt_invalid_payload",
            &"not a dynsec response",
        );
    };
    let correlation = responses
        .first()
        .and_then(|r| r.get("correlationData"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let waiter = correlation.and_then(|c| waiters.lock().ok().and_then(|mut w| w.remove(&c)));
    match waiter {
        Some(w) => {
            let _ = w.send(responses);
        }
        // Another server process's request (they share the topic).
        None => tracing::debug!("dynsec response for someone else"),
    }
}

/// A parsed registration from `provisioning/register`.
pub async fn handle_register(services: &Services, reg: wire::RegisterPayload) {
    let registration = Registration {
        client_id: reg.client_id,
        serial: reg.serial,
        name: reg.name,
        model: reg.model,
        firmware: reg.firmware,
        compartments: reg
            .compartments
            .into_iter()
            .map(|c| NewCompartment {
                number: c.number,
                size: c.size,
                label: c.label,
            })
            .collect(),
        provisioning_key: reg.provisioning_key,
    };
    match provisioning::provision(services, registration).await {
        Ok(reply) if reply.ok => {}
        Ok(reply) => count_rejection(match reply.error {
            Some(ProvisioningFailure::UnknownSerial) => "provisioning_unknown_serial",
            Some(ProvisioningFailure::InvalidKey) => "provisioning_invalid_key",
            Some(ProvisioningFailure::AlreadyProvisioned) => "provisioning_already_provisioned",
            Some(ProvisioningFailure::Decommissioned) => "provisioning_decommissioned",
            Some(ProvisioningFailure::InvalidRegistration) => "provisioning_invalid_registration",
            Some(ProvisioningFailure::Superseded) => "provisioning_superseded",
            _ => "provisioning_failed",
        }),
        Err(e) => tracing::error!(error = %e, "provisioning failed"),
    }
}

fn refuse(topic: &str, reason: &'static str, detail: &dyn std::fmt::Display) {
    tracing::warn!(topic = %topic.chars().take(200).collect::<String>(), reason, %detail, "MQTT message refused");
    count_rejection(reason);
}

/// A result's acknowledgement to publish: `locker/{bank_id}/ack`.
#[derive(Debug)]
pub struct Ack {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// One inbound message on a locker topic; for a recorded result, the
/// acknowledgement to send the locker.
pub async fn handle_publish(services: &Services, topic: &str, payload: &[u8]) -> Option<Ack> {
    let bank_id = match topics::parse_locker(topic) {
        Ok((bank_id, LockerTopic::Status)) => {
            count_message("in", "result");
            bank_id
        }
        Ok((bank_id, LockerTopic::State)) => {
            count_message("in", "state");
            handle_state(services, topic, bank_id, payload).await;
            return None;
        }
        Ok((_, LockerTopic::Command | LockerTopic::Ack)) => {
            refuse(topic, "mqtt_bad_topic", &"not a status or state topic");
            return None;
        }
        Err(e) => {
            refuse(topic, e.reason(), &e);
            return None;
        }
    };
    let status = match parse_status(payload) {
        Ok(s) => s,
        Err(e) => {
            refuse(topic, e.reason(), &e);
            return None;
        }
    };
    let span = tracing::info_span!("locker_result", command_id = %status.command_id, %bank_id);
    record_status(services, topic, bank_id, status)
        .instrument(span)
        .await
}

/// A parsed result from a locker: checked against the command's owner,
/// then recorded; once recorded (now or before), acknowledged.
async fn record_status(
    services: &Services,
    topic: &str,
    bank_id: uuid::Uuid,
    status: wire::StatusPayload,
) -> Option<Ack> {
    let success = status.result == CommandResult::ActionCompleted;
    let command_id = status.command_id;
    // The command's bank is checked in the write that records the result.
    let recorded = opens::record_result_from(
        services,
        command_id,
        Some(bank_id),
        success,
        status.error,
        now_ms(),
    )
    .await;
    match recorded {
        Err(lockstep_core::CoreError::NotFound) => {
            refuse(topic, "mqtt_unknown_command", &command_id);
            None
        }
        Ok(opens::Recorded {
            outcome: opens::ResultOutcome::WrongLocker,
            ..
        }) => {
            refuse(
                topic,
                "mqtt_wrong_locker",
                &"the command belongs to another locker",
            );
            None
        }
        Ok(opens::Recorded {
            outcome: opens::ResultOutcome::NotSent,
            ..
        }) => {
            // Denied, never sent: nothing to record, nothing to ack.
            refuse(topic, "mqtt_command_not_sent", &command_id);
            None
        }
        Ok(opens::Recorded {
            outcome,
            round_trip_ms,
        }) => {
            tracing::info!(?outcome, success, "locker result");
            if outcome == opens::ResultOutcome::Duplicate {
                // A locker repeating a result whose ack it has not seen
                // (lost to a broker restart, or still on its way).
                metrics::counter!("lockstep_mqtt_results_repeated_total").increment(1);
            }
            if let Some(ms) = round_trip_ms {
                metrics::histogram!("lockstep_mqtt_command_round_trip_seconds")
                    .record(ms as f64 / 1000.0);
            }
            let payload = serde_json::to_vec(&wire::AckPayload {
                v: VERSION,
                command_id,
            })
            .ok()?;
            Some(Ack {
                topic: topics::locker(bank_id, LockerTopic::Ack),
                payload,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "recording the locker result failed");
            None
        }
    }
}

/// A heartbeat: the bank's `last_seen` moves; silence ends it offline.
async fn handle_state(services: &Services, topic: &str, bank_id: uuid::Uuid, payload: &[u8]) {
    let state = match wire::parse_state(payload) {
        Ok(s) => s,
        Err(e) => return refuse(topic, e.reason(), &e),
    };
    match lockstep_core::lockers::heartbeat(services, bank_id, now_ms()).await {
        Ok(Some(_)) => {}
        Ok(None) => return refuse(topic, "mqtt_unknown_locker", &bank_id),
        Err(e) => {
            return tracing::error!(error = %e, %bank_id, "recording a heartbeat failed");
        }
    }
    let Some(compartments) = state.compartments.filter(|c| !c.is_empty()) else {
        return;
    };
    let reports: Vec<CompartmentReport> = compartments
        .iter()
        .map(|c| CompartmentReport {
            number: c.number,
            door_open: c.door.map(|d| d == wire::Door::Open),
            occupied: c.occupied,
        })
        .collect();
    match lockstep_core::lockers::compartment_report(services, bank_id, &reports, now_ms()).await {
        Ok(unknown) if unknown.is_empty() => {}
        Ok(unknown) => refuse(
            topic,
            "mqtt_unknown_compartment",
            &format!("no compartments {unknown:?} in this bank"),
        ),
        Err(e) => tracing::error!(error = %e, %bank_id, "recording a state report failed"),
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
