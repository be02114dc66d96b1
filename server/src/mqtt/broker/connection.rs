//! One client connection of the embedded broker: CONNECT and the login,
//! then packets in (each publish and subscribe checked against the
//! client's role), messages out with QoS 1 in flight until PUBACKed, the
//! keep-alive, the will, and what is handed back to the session at the end.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use rumqttc::{
    mqttbytes::{Error as CodecError, Protocol},
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, QoS, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
    sync::mpsc,
    time::Instant,
};

use super::{
    acl::{self, Role},
    router::{min_qos, Message, Outbound, Refused},
    topic, Limits, Shared,
};
use crate::metrics::count_rejection;

/// Why a connection ended, for the log.
enum End {
    /// DISCONNECT from the client: no will.
    Clean,
    /// Socket closed, keep-alive lapsed, protocol error: the will goes out.
    Lost(String),
    /// Closed by the broker (takeover, disabled account).
    Closed(&'static str),
}

/// Serves one TCP connection to its end.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let limits = shared.limits.clone();
    let mut buf = BytesMut::with_capacity(1024);
    let first = tokio::time::timeout(limits.connect_timeout, async {
        // The whole first packet, then its protocol level: rumqttc's codec
        // cannot read an MQTT 5 CONNECT, which must still get 0x01.
        read_frame(&mut rd, &mut buf, limits.max_packet).await?;
        if let Some(level) = connect_level(&buf).filter(|l| *l != 4) {
            return Err(ReadError::Codec(CodecError::InvalidProtocolLevel(level)));
        }
        read_packet(&mut rd, &mut buf, limits.max_packet).await
    })
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) if c.protocol == Protocol::V4 => c,
        Ok(Ok(Packet::Connect(_)))
        | Ok(Err(ReadError::Codec(
            CodecError::InvalidProtocolLevel(_) | CodecError::InvalidProtocol,
        ))) => {
            refuse_connect(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
            return reject(
                peer,
                "",
                "mqtt_protocol_error",
                &"not MQTT 3.1.1 (protocol name MQTT, level 4)",
            );
        }
        Ok(Ok(other)) => {
            return reject(
                peer,
                "",
                "mqtt_protocol_error",
                &format!("first packet was {}, not CONNECT", packet_name(&other)),
            );
        }
        Ok(Err(e)) => return note_read_error(peer, "", &e, &buf),
        Err(_) => {
            return reject(peer, "", "mqtt_connect_timeout", &"no CONNECT in time");
        }
    };
    let client_id = if connect.client_id.is_empty() && connect.clean_session {
        format!("auto-{}", uuid::Uuid::now_v7().simple())
    } else {
        connect.client_id.clone()
    };
    // Wildcards or a slash in a client id would widen the topic rules
    // built from it (`provisioning/{client_id}/reply`).
    if client_id.is_empty() || client_id.len() > 256 || client_id.contains(['+', '#', '/', '\0']) {
        refuse_connect(&mut wr, ConnectReturnCode::BadClientId).await;
        return reject(
            peer,
            &clip(&client_id),
            "mqtt_login_refused",
            &"client id empty (with a persistent session), over 256 bytes, or with + # / or NUL",
        );
    }
    let (username, password) = match &connect.login {
        Some(l) => (Some(l.username.as_str()), Some(l.password.as_str())),
        None => (None, None),
    };
    let login_started = std::time::Instant::now();
    let role = match shared.login(&client_id, username, password).await {
        Ok(role) => role,
        Err(why) => {
            refuse_connect(&mut wr, ConnectReturnCode::NotAuthorized).await;
            return reject(
                peer,
                &clip(&client_id),
                "mqtt_login_refused",
                &format!("{why} (user {:?})", clip(username.unwrap_or(""))),
            );
        }
    };
    if role == Role::Provisioning
        && (!lockstep_wire::mqtt::valid_client_id(&client_id) || client_id.starts_with("locker-"))
    {
        refuse_connect(&mut wr, ConnectReturnCode::BadClientId).await;
        return reject(
            peer,
            &clip(&client_id),
            "mqtt_login_refused",
            &"a provisioning client id is 16 to 64 of [A-Za-z0-9_-], not locker-*",
        );
    }
    // A provisioning client has nothing to come back to: no session kept.
    let clean = connect.clean_session || role == Role::Provisioning;
    let client: Arc<str> = client_id.into();
    let (tx, mut rx) = mpsc::channel(shared.router.max_queued().max(1));
    let connected = match shared
        .router
        .connect(&client, role, clean, tx, login_started)
    {
        Ok(c) => c,
        Err(refused) => {
            let (code, why) = match refused {
                Refused::ClientIdInUse => (
                    ConnectReturnCode::BadClientId,
                    "client id in use by another kind of client",
                ),
                Refused::Kicked => (
                    ConnectReturnCode::NotAuthorized,
                    "account disabled while its login was checked",
                ),
            };
            refuse_connect(&mut wr, code).await;
            return reject(peer, &client, "mqtt_login_refused", &why);
        }
    };
    let mut session = Session {
        client: client.clone(),
        role,
        peer,
        inflight: BTreeMap::new(),
        sent: 0,
        waiting: connected.backlog.into(),
        next_pkid: 0,
        qos2_in: HashSet::new(),
        out: BytesMut::with_capacity(1024),
        limits: limits.clone(),
        shared: shared.clone(),
    };
    session.write(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        connected.session_present,
    )));
    tracing::debug!(client_id = %client, ?role, %peer, session_present = connected.session_present, "MQTT client connected");
    metrics::gauge!("lockstep_mqtt_broker_clients").increment(1.0);
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let write_timeout = keep_alive
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(30));
    let mut deadline = keep_alive.map(|k| Instant::now() + k);
    let end = 'conn: loop {
        // Whole packets already read (a client may send CONNECT and more
        // in one segment) are handled before waiting for more.
        loop {
            match Packet::read(&mut buf, limits.max_packet) {
                Ok(packet) => {
                    if let Some(end) = session.handle(packet) {
                        break 'conn end;
                    }
                }
                Err(CodecError::InsufficientBytes(_)) => break,
                Err(e) => {
                    let e = ReadError::Codec(e);
                    note_read_error(peer, &client, &e, &buf);
                    break 'conn End::Lost(e.to_string());
                }
            }
        }
        session.fill_inflight();
        if !session.out.is_empty() {
            match tokio::time::timeout(write_timeout, wr.write_all(&session.out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break End::Lost(format!("write failed: {e}")),
                Err(_) => break End::Lost("the client stopped reading".into()),
            }
            session.out.clear();
            if session.out.capacity() > 64 * 1024 {
                session.out = BytesMut::with_capacity(1024);
            }
        }
        let lapse = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = rd.read_buf(&mut buf) => {
                match read {
                    Ok(0) => break End::Lost("connection closed by the client".into()),
                    Ok(_) => deadline = keep_alive.map(|k| Instant::now() + k),
                    Err(e) => break End::Lost(format!("read failed: {e}")),
                }
            }
            message = rx.recv() => match message {
                Some(Outbound::Publish(m)) => session.queue(m),
                Some(Outbound::Close(why)) => break End::Closed(why),
                None => break End::Closed("session ended"),
            },
            _ = lapse => break End::Lost("keep-alive lapsed".into()),
        }
    };
    metrics::gauge!("lockstep_mqtt_broker_clients").decrement(1.0);
    // What was not delivered goes back to the session, in the order it was
    // sent, those sent marked as repeats.
    let mut inflight: Vec<(u64, Message)> = std::mem::take(&mut session.inflight)
        .into_values()
        .collect();
    inflight.sort_by_key(|(seq, _)| *seq);
    let mut unacked: Vec<Message> = inflight
        .into_iter()
        .map(|(_, m)| Message { dup: true, ..m })
        .collect();
    unacked.extend(session.waiting.drain(..));
    let still_live = shared.router.disconnect(
        &client,
        connected.id,
        connected.generation,
        unacked,
        &mut rx,
    );
    match end {
        End::Clean => tracing::debug!(client_id = %client, "MQTT client disconnected"),
        End::Closed(why) => {
            tracing::info!(client_id = %client, why, "MQTT client closed by the broker");
            let _ = wr.shutdown().await;
        }
        End::Lost(why) => {
            tracing::debug!(client_id = %client, %why, "MQTT client lost");
            // Not for a connection taken over or kicked in the meantime.
            if let (Some(will), true) = (connect.last_will, still_live) {
                session.publish_from_client(&will.topic, will.message, will.qos, will.retain);
            }
        }
    }
}

/// A client id or username cut for a log line.
fn clip(text: &str) -> String {
    text.chars().take(100).collect()
}

fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// A connection's own state.
struct Session {
    client: Arc<str>,
    role: Role,
    peer: SocketAddr,
    /// Sent at QoS 1, waiting for their PUBACK, by packet id (with the
    /// order they were sent in).
    inflight: BTreeMap<u16, (u64, Message)>,
    sent: u64,
    /// Waiting for room in flight.
    waiting: VecDeque<Message>,
    next_pkid: u16,
    /// QoS 2 publishes received and not yet released (not routed twice).
    qos2_in: HashSet<u16>,
    out: BytesMut,
    limits: Limits,
    shared: Arc<Shared>,
}

impl Session {
    fn write(&mut self, packet: Packet) {
        if let Err(e) = packet.write(&mut self.out, usize::MAX) {
            tracing::error!(client_id = %self.client, error = %e, "could not encode an MQTT packet");
        }
    }

    /// Takes a message routed to this client; beyond `max_queued` waiting
    /// (a client that reads but never acknowledges), drops it.
    fn queue(&mut self, m: Message) {
        if self.waiting.len() >= self.limits.max_queued {
            self.refuse(
                &m.topic,
                "mqtt_queue_full",
                "the client acknowledges nothing",
                "deliver",
            );
            return;
        }
        self.waiting.push_back(m);
    }

    /// Moves waiting messages into flight while there is room.
    fn fill_inflight(&mut self) {
        while self.inflight.len() < self.limits.max_inflight {
            let Some(m) = self.waiting.pop_front() else {
                return;
            };
            let mut p = Publish::from_bytes(m.topic.to_string(), m.qos, m.payload.clone());
            p.retain = m.retain;
            p.dup = m.dup && m.qos != QoS::AtMostOnce;
            if m.qos != QoS::AtMostOnce {
                p.pkid = self.next_free_pkid();
                self.sent += 1;
                self.inflight.insert(p.pkid, (self.sent, m));
            }
            self.write(Packet::Publish(p));
        }
    }

    fn next_free_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// One packet from the client; `Some` ends the connection.
    fn handle(&mut self, packet: Packet) -> Option<End> {
        match packet {
            Packet::Publish(p) => {
                if !topic::valid_topic(&p.topic) {
                    // A protocol error (MQTT 3.1.1 §3.3.2.2): the
                    // connection ends.
                    self.refuse(
                        &p.topic,
                        "mqtt_bad_topic",
                        "not a valid topic name",
                        "publish",
                    );
                    return Some(End::Lost("publish to an invalid topic name".into()));
                }
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => self.write(Packet::PubAck(PubAck::new(p.pkid))),
                    QoS::ExactlyOnce => {
                        self.write(Packet::PubRec(PubRec::new(p.pkid)));
                        if !self.qos2_in.insert(p.pkid) {
                            return None;
                        }
                    }
                }
                self.publish_from_client(&p.topic, p.payload, p.qos, p.retain);
            }
            Packet::PubAck(ack) => {
                self.inflight.remove(&ack.pkid);
            }
            Packet::PubRel(rel) => {
                self.qos2_in.remove(&rel.pkid);
                self.write(Packet::PubComp(PubComp::new(rel.pkid)));
            }
            // Never sent at QoS 2, so nothing to complete.
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut retained = Vec::new();
                for f in &s.filters {
                    let why = if !topic::valid_filter(&f.path) {
                        Some("not a valid filter")
                    } else if !acl::may_subscribe(self.role, &self.client, &f.path) {
                        Some("not allowed for this client")
                    } else {
                        None
                    };
                    match why {
                        Some(why) => {
                            self.refuse(&f.path, "mqtt_acl_denied", why, "subscribe");
                            codes.push(SubscribeReasonCode::Failure);
                        }
                        None => {
                            let qos = min_qos(f.qos, QoS::AtLeastOnce);
                            retained.extend(self.shared.router.subscribe(
                                &self.client,
                                &f.path,
                                qos,
                            ));
                            codes.push(SubscribeReasonCode::Success(qos));
                        }
                    }
                }
                self.write(Packet::SubAck(SubAck::new(s.pkid, codes)));
                for mut m in retained {
                    m.retain = true;
                    self.queue(m);
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.topics {
                    self.shared.router.unsubscribe(&self.client, f);
                }
                self.write(Packet::UnsubAck(UnsubAck::new(u.pkid)));
            }
            Packet::PingReq => self.write(Packet::PingResp),
            Packet::Disconnect => return Some(End::Clean),
            other => {
                reject(
                    self.peer,
                    &self.client,
                    "mqtt_protocol_error",
                    &format!("unexpected {} from a client", packet_name(&other)),
                );
                return Some(End::Lost("protocol error".into()));
            }
        }
        None
    }

    /// A publish (or will) from this client: checked, then routed.
    fn publish_from_client(&mut self, topic: &str, payload: bytes::Bytes, qos: QoS, retain: bool) {
        if !topic::valid_topic(topic) {
            return self.refuse(topic, "mqtt_bad_topic", "not a valid topic name", "publish");
        }
        if !acl::may_publish(self.role, &self.client, topic) {
            // Acknowledged all the same (as Mosquitto does): the client is
            // not told, the message goes nowhere.
            return self.refuse(
                topic,
                "mqtt_acl_denied",
                "not allowed for this client",
                "publish",
            );
        }
        // A copy: the payload would otherwise keep the connection's whole
        // read buffer alive while it waits in a queue.
        let message = Message {
            topic: topic.into(),
            payload: bytes::Bytes::copy_from_slice(&payload),
            qos: min_qos(qos, QoS::AtLeastOnce),
            retain: false,
            dup: false,
        };
        // Only the server may leave retained messages (a locker's retained
        // heartbeat would show it online after every bridge reconnect).
        if retain && self.role == Role::Bridge {
            self.shared.router.retain(&Message {
                retain: true,
                ..message.clone()
            });
        }
        self.shared.router.publish(&message);
    }

    fn refuse(&self, topic: &str, reason: &'static str, why: &str, what: &str) {
        tracing::warn!(
            client_id = %self.client,
            role = ?self.role,
            topic = %topic.chars().take(200).collect::<String>(),
            reason,
            why,
            what,
            "embedded MQTT broker refused"
        );
        count_rejection(reason);
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Codec(CodecError),
    #[error("connection closed")]
    Closed,
    #[error("read failed: {0}")]
    Io(std::io::Error),
}

/// Reads until `buf` holds one whole packet (not parsed).
async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(), ReadError> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(_) => return Ok(()),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ReadError::Codec(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// The protocol level of the CONNECT at the start of `buf`.
fn connect_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    let mut at = 1;
    while buf.get(at)? & 0x80 != 0 {
        at += 1;
        if at > 4 {
            return None;
        }
    }
    let name_len = u16::from_be_bytes([*buf.get(at + 1)?, *buf.get(at + 2)?]) as usize;
    buf.get(at + 3 + name_len).copied()
}

/// Reads until one whole packet is in `buf`.
async fn read_packet(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, ReadError> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ReadError::Codec(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

async fn refuse_connect(wr: &mut OwnedWriteHalf, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if Packet::ConnAck(ConnAck::new(code, false))
        .write(&mut out, usize::MAX)
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(2), wr.write_all(&out)).await;
    }
    let _ = wr.shutdown().await;
}

fn reject(peer: SocketAddr, client_id: &str, reason: &'static str, why: &dyn std::fmt::Display) {
    tracing::warn!(%peer, client_id, reason, %why, "embedded MQTT broker refused a client");
    count_rejection(reason);
}

/// Logs and counts why reading failed; an oversize packet names its topic
/// when the buffer holds it.
fn note_read_error(peer: SocketAddr, client_id: &str, e: &ReadError, buf: &BytesMut) {
    match e {
        ReadError::Codec(CodecError::PayloadSizeLimitExceeded(size)) => {
            let topic = oversize_topic(buf).unwrap_or_default();
            count_rejection("mqtt_oversize");
            // A client that sends the same packet again after every
            // reconnect is logged once a minute, counted every time.
            if first_in_a_minute(client_id) {
                tracing::warn!(%peer, client_id, size, topic = %topic, reason = "mqtt_oversize", "embedded MQTT broker refused an oversize packet; client disconnected (logged once a minute per client)");
            } else {
                tracing::debug!(%peer, client_id, size, topic = %topic, reason = "mqtt_oversize", "oversize packet again");
            }
        }
        ReadError::Closed | ReadError::Io(_) => {
            tracing::debug!(%peer, client_id, error = %e, "MQTT client went away")
        }
        ReadError::Codec(e) => reject(peer, client_id, "mqtt_protocol_error", e),
    }
}

/// Whether `client_id` was not logged in the last minute (and now is).
fn first_in_a_minute(client_id: &str) -> bool {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock},
    };
    static LOGGED: OnceLock<Mutex<HashMap<String, std::time::Instant>>> = OnceLock::new();
    let mut logged = LOGGED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let now = std::time::Instant::now();
    if logged.len() > 10_000 {
        logged.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
    }
    match logged.get(client_id) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(60) => false,
        _ => {
            logged.insert(client_id.to_string(), now);
            true
        }
    }
}

/// The topic of the PUBLISH at the start of `buf`, if it is there whole.
fn oversize_topic(buf: &[u8]) -> Option<String> {
    if buf.first()? >> 4 != 3 {
        return None;
    }
    // The remaining length: 1 to 4 bytes after the first.
    let mut at = 1;
    while buf.get(at)? & 0x80 != 0 {
        at += 1;
        if at > 4 {
            return None;
        }
    }
    let start = at + 1;
    let len = u16::from_be_bytes([*buf.get(start)?, *buf.get(start + 1)?]) as usize;
    let name = buf.get(start + 2..start + 2 + len)?;
    Some(String::from_utf8_lossy(name).chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::oversize_topic;

    #[test]
    fn the_protocol_level_of_a_connect_is_read_from_its_first_bytes() {
        // CONNECT, remaining length 16, "MQTT", level 5.
        let v5 = [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60];
        assert_eq!(super::connect_level(&v5), Some(5));
        let v31 = [0x10, 18, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3];
        assert_eq!(super::connect_level(&v31), Some(3));
        assert_eq!(super::connect_level(&[0x30, 1]), None);
        assert_eq!(super::connect_level(&[0x10]), None);
    }

    #[test]
    fn the_topic_of_an_oversize_publish_is_read_from_its_first_bytes() {
        let mut packet = vec![0x32, 0x80, 0x80, 0x04, 0, 3];
        packet.extend_from_slice(b"a/b");
        assert_eq!(oversize_topic(&packet).as_deref(), Some("a/b"));
        assert_eq!(oversize_topic(&packet[..5]), None);
        assert_eq!(oversize_topic(&[0x82, 0x05]), None);
        assert_eq!(oversize_topic(&[]), None);
    }
}
