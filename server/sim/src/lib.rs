//! Simulated locker banks, speaking to the broker exactly as docs/mqtt.md
//! tells a locker to: provision on the provisioning listener, then connect
//! with the delivered account, heartbeat on `locker/{id}/state`, take
//! commands from `locker/{id}/command` (ignoring expired ones, and
//! answering a repeated `command_id` with its recorded result), answer on
//! `locker/{id}/status`, and repeat each result with backoff until the
//! server acknowledges it on `locker/{id}/ack`.
//!
//! Topics and payloads come from `lockstep-wire`, the crate the server's
//! bridge uses too: a renamed field or status breaks both builds at once.
//! What the simulator does with them (retries, dedup, expiry, timing)
//! follows docs/mqtt.md, the contract a firmware writer reads.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use lockstep_wire::mqtt::{
    parse_ack,
    topics::{self, LockerTopic},
    CommandPayload, CommandResult, CompartmentState, Door, ProvisioningFailure, ProvisioningReply,
    RegisterCompartment, RegisterPayload, StatePayload, StatusPayload, VERSION,
};
use rand::Rng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("provisioning refused: {}{}", error.map_or("(no reason)", ProvisioningFailure::as_str), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// `None` when the reply named no reason.
        error: Option<ProvisioningFailure>,
        detail: Option<String>,
    },
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("bad reply: {0}")]
    BadReply(String),
    #[error("bad URL: {0}")]
    BadUrl(String),
}

/// Host, port and (optional) login of a broker listener.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Endpoint {
    /// `mqtt://[user[:password]@]host[:port]`
    pub fn parse(url: &str) -> Result<Self, SimError> {
        let bad = || SimError::BadUrl(url.to_string());
        let rest = url.strip_prefix("mqtt://").ok_or_else(bad)?;
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (username, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(a.to_string()), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.trim_end_matches('/').rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (hostport.to_string(), 1883),
        };
        Ok(Endpoint {
            host,
            port,
            username,
            password,
        })
    }
}

/// What a locker says about itself when it registers.
#[derive(Clone, Debug)]
pub struct Identity {
    pub serial: String,
    pub compartments: u32,
    pub provisioning_key: Option<String>,
    pub model: String,
    pub firmware: String,
}

/// The account a locker got from provisioning (a real locker keeps it in
/// flash; `lockstep serve --demo` in its data directory).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub bank_id: Uuid,
    pub username: String,
    pub password: String,
    /// The locker listener named in the reply, if the server named one.
    #[serde(default)]
    pub broker_url: Option<String>,
}

/// How long a locker first waits for a reply before asking again (then
/// twice as long each time, up to 8×).
pub const RETRY_REGISTRATION: Duration = Duration::from_secs(3);

/// Registers on the provisioning listener and waits for the reply.
pub async fn provision(
    at: &Endpoint,
    who: &Identity,
    timeout: Duration,
) -> Result<Credentials, SimError> {
    let client_id = format!("prov-{}", Uuid::now_v7().simple());
    let mut opts = MqttOptions::new(client_id.clone(), at.host.clone(), at.port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(u) = &at.username {
        opts.set_credentials(u.clone(), at.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let reply_topic = topics::provisioning_reply(&client_id);
    let register = RegisterPayload {
        v: VERSION,
        client_id: client_id.clone(),
        serial: who.serial.clone(),
        name: None,
        model: Some(who.model.clone()),
        firmware: Some(who.firmware.clone()),
        compartments: (1..=who.compartments)
            .map(|n| RegisterCompartment {
                number: i64::from(n),
                size: "medium".into(),
                label: None,
            })
            .collect(),
        provisioning_key: who.provisioning_key.clone(),
    };
    client
        .subscribe(reply_topic.clone(), QoS::AtLeastOnce)
        .await
        .map_err(|e| SimError::Mqtt(e.to_string()))?;
    // Asks again every few seconds until answered (the server may not be
    // listening yet); a retry from the same client id gets the same answer.
    let ask = {
        let client = client.clone();
        let register = serde_json::to_string(&register).unwrap_or_default();
        move || client.try_publish(topics::REGISTER, QoS::AtLeastOnce, false, register.clone())
    };
    let outcome = tokio::time::timeout(timeout, async {
        let mut subscribed = false;
        let mut again = tokio::time::interval(RETRY_REGISTRATION);
        again.tick().await;
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = again.tick(), if subscribed => {
                    ask().map_err(|e| SimError::Mqtt(e.to_string()))?;
                    // Back off: 3 s, 6 s, 12 s, then every 24 s.
                    let next = (again.period() * 2).min(RETRY_REGISTRATION * 8);
                    again = tokio::time::interval_at(tokio::time::Instant::now() + next, next);
                    continue;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    // Subscribed: now it is safe to ask.
                    subscribed = true;
                    ask().map_err(|e| SimError::Mqtt(e.to_string()))?;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == reply_topic => {
                    let reply: ProvisioningReply = serde_json::from_slice(&p.payload)
                        .map_err(|e| SimError::BadReply(e.to_string()))?;
                    return match (
                        reply.ok,
                        reply.locker_bank_id,
                        reply.username,
                        reply.password,
                    ) {
                        (true, Some(bank_id), Some(username), Some(password)) => Ok(Credentials {
                            bank_id,
                            username,
                            password,
                            broker_url: reply.broker_url,
                        }),
                        _ => Err(SimError::Refused {
                            error: reply.error,
                            detail: reply.detail,
                        }),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(SimError::Mqtt(e.to_string())),
            }
        }
    })
    .await
    .unwrap_or(Err(SimError::Timeout(timeout)));
    let _ = client.try_disconnect();
    outcome
}

/// The broker's share of provisioning, for comparison: connect with the
/// provisioning login, subscribe to the reply topic, wait for the SUBACK,
/// and stay connected (no server involved). Returns the client to keep.
pub async fn connect_only(at: &Endpoint, timeout: Duration) -> Result<AsyncClient, SimError> {
    let client_id = format!("prov-{}", Uuid::now_v7().simple());
    let mut opts = MqttOptions::new(client_id.clone(), at.host.clone(), at.port);
    opts.set_keep_alive(Duration::from_secs(60));
    if let Some(u) = &at.username {
        opts.set_credentials(u.clone(), at.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    client
        .subscribe(topics::provisioning_reply(&client_id), QoS::AtLeastOnce)
        .await
        .map_err(|e| SimError::Mqtt(e.to_string()))?;
    tokio::time::timeout(timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(SimError::Mqtt(e.to_string())),
            }
        }
    })
    .await
    .map_err(|_| SimError::Timeout(timeout))??;
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    Ok(client)
}

/// How a simulated locker behaves.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Time between a command and its result.
    pub latency: Duration,
    /// Share of commands answered `action_failed`.
    pub failure_rate: f64,
    /// Share of results sent twice.
    pub duplicate_rate: f64,
    pub heartbeat: Duration,
    /// Chance per heartbeat to fall silent for `silence` (the server then
    /// marks the locker offline, and online again when it is back).
    pub silence_rate: f64,
    pub silence: Duration,
    pub firmware: String,
    /// After a completed open, report the door open, then closed a second
    /// later (on `locker/{id}/state`).
    pub report_doors: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency: Duration::from_millis(0),
            failure_rate: 0.0,
            duplicate_rate: 0.0,
            heartbeat: Duration::from_secs(30),
            silence_rate: 0.0,
            silence: Duration::from_secs(120),
            firmware: "sim-1.0".into(),
            report_doors: false,
        }
    }
}

/// Counters over every simulated locker of a process.
#[derive(Debug, Default)]
pub struct Stats {
    pub online: AtomicU64,
    pub commands: AtomicU64,
    pub expired: AtomicU64,
    pub duplicates_ignored: AtomicU64,
    pub results: AtomicU64,
    /// Results sent again: unacknowledged after their wait, or asked for by
    /// a repeated command.
    pub results_repeated: AtomicU64,
    /// Results the server acknowledged.
    pub acks: AtomicU64,
    /// Results given up on, unacknowledged, long past their expiry.
    pub results_abandoned: AtomicU64,
    pub heartbeats: AtomicU64,
    pub disconnects: AtomicU64,
    /// Every command this process's lockers carried out successfully (the
    /// door opened), so a test can check each of them ended `opened`.
    pub opened: Mutex<Vec<Uuid>>,
}

/// The first wait for a result's ack before sending it again; each wait
/// doubles, up to [`RESULT_RETRY_MAX`].
pub const RESULT_RETRY_FIRST: Duration = Duration::from_secs(2);
pub const RESULT_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long after its command's `expires_at` an unacknowledged result is
/// still repeated.
pub const RESULT_GIVE_UP_AFTER_EXPIRY: Duration = Duration::from_secs(600);

/// A result sent and not yet acknowledged.
struct Unconfirmed {
    payload: String,
    next_at: tokio::time::Instant,
    wait: Duration,
    give_up_at_ms: i64,
}

/// Results waiting for their ack, by command.
type Outbox = Arc<Mutex<HashMap<Uuid, Unconfirmed>>>;

/// A running simulated locker.
pub struct Locker {
    pub client: AsyncClient,
    pub credentials: Credentials,
    /// True while connected and subscribed.
    pub ready: watch::Receiver<bool>,
    pub connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    beat: tokio::task::JoinHandle<()>,
    repeat: tokio::task::JoinHandle<()>,
}

impl Locker {
    /// Waits until the locker is connected and subscribed.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), SimError> {
        tokio::time::timeout(timeout, self.ready.wait_for(|r| *r))
            .await
            .map_err(|_| SimError::Timeout(timeout))?
            .map_err(|e| SimError::Mqtt(e.to_string()))?;
        Ok(())
    }

    /// Waits until the broker has dropped the locker.
    pub async fn wait_disconnected(&mut self, timeout: Duration) -> Result<(), SimError> {
        tokio::time::timeout(timeout, self.ready.wait_for(|r| !*r))
            .await
            .map_err(|_| SimError::Timeout(timeout))?
            .map_err(|e| SimError::Mqtt(e.to_string()))?;
        Ok(())
    }

    pub fn stop(self) {
        self.task.abort();
        self.beat.abort();
        self.repeat.abort();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Connects with the delivered account and runs the locker until stopped.
pub fn run(
    at: &Endpoint,
    credentials: Credentials,
    behaviour: Behaviour,
    stats: Arc<Stats>,
) -> Locker {
    let bank = credentials.bank_id;
    let mut opts = MqttOptions::new(credentials.username.clone(), at.host.clone(), at.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    opts.set_credentials(credentials.username.clone(), credentials.password.clone());
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (ready_tx, ready) = watch::channel(false);
    let connected = Arc::new(AtomicBool::new(false));
    let command_topic = topics::locker(bank, LockerTopic::Command);
    let ack_topic = topics::locker(bank, LockerTopic::Ack);
    let status_topic = topics::locker(bank, LockerTopic::Status);
    let outbox: Outbox = Arc::default();
    let state_topic = topics::locker(bank, LockerTopic::State);
    let heartbeat = serde_json::to_string(&StatePayload {
        v: VERSION,
        firmware: Some(behaviour.firmware.clone()),
        compartments: None,
    })
    .unwrap_or_default();

    let task = {
        let client = client.clone();
        let stats = stats.clone();
        let connected = connected.clone();
        let behaviour = behaviour.clone();
        let heartbeat = heartbeat.clone();
        let state_topic = state_topic.clone();
        let outbox = outbox.clone();
        let status_topic = status_topic.clone();
        tokio::spawn(async move {
            // Recent commands and, once known, their result: a repeated
            // command gets the recorded result again, never a second open.
            let mut seen: HashMap<Uuid, Option<String>> = HashMap::new();
            let mut order: VecDeque<Uuid> = VecDeque::new();
            let (results_tx, mut results_rx) =
                tokio::sync::mpsc::unbounded_channel::<(Uuid, String)>();
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    Some((id, result)) = results_rx.recv() => {
                        if let Some(known) = seen.get_mut(&id) {
                            *known = Some(result);
                        }
                        continue;
                    }
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Subscribed again on every connection, whatever the
                        // broker says of the session: a broker that lost it
                        // (a crash) would otherwise deliver nothing.
                        let _ = client.try_subscribe_many([
                            SubscribeFilter::new(command_topic.clone(), QoS::AtLeastOnce),
                            SubscribeFilter::new(ack_topic.clone(), QoS::AtLeastOnce),
                        ]);
                        // What waits for an ack goes again a second after
                        // connecting (time for the server to be back too),
                        // its backoff started over.
                        if let Ok(mut o) = outbox.lock() {
                            let soon = tokio::time::Instant::now() + Duration::from_secs(1);
                            o.values_mut().for_each(|u| {
                                u.next_at = soon;
                                u.wait = RESULT_RETRY_FIRST / 2;
                            });
                        }
                        let _ = client.try_publish(
                            state_topic.clone(),
                            QoS::AtLeastOnce,
                            false,
                            heartbeat.clone(),
                        );
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if !connected.swap(true, Ordering::SeqCst) {
                            stats.online.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = ready_tx.send(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                        if let Ok(ack) = parse_ack(&p.payload) {
                            let known = outbox
                                .lock()
                                .map(|mut o| o.remove(&ack.command_id).is_some());
                            if known.unwrap_or(false) {
                                stats.acks.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == command_topic => {
                        let Ok(cmd) = serde_json::from_slice::<CommandPayload>(&p.payload) else {
                            continue;
                        };
                        stats.commands.fetch_add(1, Ordering::Relaxed);
                        if let Some(known) = seen.get(&cmd.command_id) {
                            // A command seen before: its result again (the
                            // server may have missed it), or nothing while
                            // it is still being carried out.
                            stats.duplicates_ignored.fetch_add(1, Ordering::Relaxed);
                            if let Some(result) = known {
                                if client
                                    .try_publish(
                                        status_topic.clone(),
                                        QoS::AtLeastOnce,
                                        false,
                                        result.clone(),
                                    )
                                    .is_ok()
                                {
                                    stats.results_repeated.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            continue;
                        }
                        if cmd.expires_at < now_ms() {
                            stats.expired.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        seen.insert(cmd.command_id, None);
                        order.push_back(cmd.command_id);
                        if order.len() > 1024 {
                            if let Some(old) = order.pop_front() {
                                seen.remove(&old);
                            }
                        }
                        let (fail, twice) = {
                            let mut rng = rand::thread_rng();
                            (
                                rng.gen_bool(behaviour.failure_rate.clamp(0.0, 1.0)),
                                rng.gen_bool(behaviour.duplicate_rate.clamp(0.0, 1.0)),
                            )
                        };
                        let result = serde_json::to_string(&StatusPayload {
                            v: VERSION,
                            command_id: cmd.command_id,
                            result: if fail {
                                CommandResult::ActionFailed
                            } else {
                                CommandResult::ActionCompleted
                            },
                            error: fail.then(|| "jammed".to_string()),
                        })
                        .unwrap_or_default();
                        let client = client.clone();
                        let topic = status_topic.clone();
                        let state_topic = state_topic.clone();
                        let latency = behaviour.latency;
                        let doors = behaviour.report_doors && !fail;
                        let stats = stats.clone();
                        let outbox = outbox.clone();
                        let results_tx = results_tx.clone();
                        tokio::spawn(async move {
                            if !latency.is_zero() {
                                tokio::time::sleep(latency).await;
                            }
                            // Carried out: from here the result is kept and
                            // repeated until acknowledged.
                            if !fail {
                                if let Ok(mut opened) = stats.opened.lock() {
                                    opened.push(cmd.command_id);
                                }
                            }
                            let _ = results_tx.send((cmd.command_id, result.clone()));
                            if let Ok(mut o) = outbox.lock() {
                                o.insert(
                                    cmd.command_id,
                                    Unconfirmed {
                                        payload: result.clone(),
                                        next_at: tokio::time::Instant::now() + RESULT_RETRY_FIRST,
                                        wait: RESULT_RETRY_FIRST,
                                        give_up_at_ms: cmd.expires_at
                                            + RESULT_GIVE_UP_AFTER_EXPIRY.as_millis() as i64,
                                    },
                                );
                            }
                            for _ in 0..(1 + usize::from(twice)) {
                                if client
                                    .publish(topic.clone(), QoS::AtLeastOnce, false, result.clone())
                                    .await
                                    .is_ok()
                                {
                                    stats.results.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if doors {
                                for (door, wait) in [(Door::Open, 0), (Door::Closed, 1000)] {
                                    tokio::time::sleep(Duration::from_millis(wait)).await;
                                    let report = StatePayload {
                                        v: VERSION,
                                        firmware: None,
                                        compartments: Some(vec![CompartmentState {
                                            number: cmd.compartment,
                                            door: Some(door),
                                            occupied: None,
                                        }]),
                                    };
                                    let _ = client
                                        .publish(
                                            state_topic.clone(),
                                            QoS::AtLeastOnce,
                                            false,
                                            serde_json::to_string(&report).unwrap_or_default(),
                                        )
                                        .await;
                                }
                            }
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected.swap(false, Ordering::SeqCst) {
                            stats.online.fetch_sub(1, Ordering::Relaxed);
                        }
                        stats.disconnects.fetch_add(1, Ordering::Relaxed);
                        let _ = ready_tx.send(false);
                        tracing::debug!(%bank, error = %e, "locker disconnected");
                        let pause = rand::thread_rng().gen_range(500..1500);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }
            }
        })
    };

    let beat = {
        let client = client.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            loop {
                let jitter = rand::thread_rng().gen_range(0.8..1.2);
                tokio::time::sleep(behaviour.heartbeat.mul_f64(jitter)).await;
                if rand::thread_rng().gen_bool(behaviour.silence_rate.clamp(0.0, 1.0)) {
                    tokio::time::sleep(behaviour.silence).await;
                }
                if client
                    .publish(
                        state_topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        heartbeat.clone(),
                    )
                    .await
                    .is_ok()
                {
                    stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let repeat = {
        let client = client.clone();
        let connected = connected.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if !connected.load(Ordering::SeqCst) {
                    continue;
                }
                let now = tokio::time::Instant::now();
                let due: Vec<String> = match outbox.lock() {
                    Ok(mut o) => {
                        let before = o.len();
                        o.retain(|_, u| u.give_up_at_ms > now_ms());
                        stats
                            .results_abandoned
                            .fetch_add((before - o.len()) as u64, Ordering::Relaxed);
                        o.values_mut()
                            .filter(|u| u.next_at <= now)
                            .map(|u| {
                                u.wait = (u.wait * 2).min(RESULT_RETRY_MAX);
                                u.next_at = now + u.wait;
                                u.payload.clone()
                            })
                            .collect()
                    }
                    Err(_) => continue,
                };
                for payload in due {
                    if client
                        .try_publish(status_topic.clone(), QoS::AtLeastOnce, false, payload)
                        .is_ok()
                    {
                        stats.results_repeated.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    Locker {
        client,
        credentials,
        ready,
        connected,
        task,
        beat,
        repeat,
    }
}
