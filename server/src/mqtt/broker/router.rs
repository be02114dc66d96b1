//! The broker's shared state: sessions (live or persistent), the
//! subscription index, retained messages, and the routing of a publish to
//! every matching subscriber (one member per shared group).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use rumqttc::QoS;
use tokio::sync::mpsc;

use super::{acl::Role, topic};
use crate::metrics::count_rejection;

/// A message on its way to one subscriber.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Sent before and not acknowledged: goes again with DUP set.
    pub dup: bool,
}

/// What a connection's task is told.
#[derive(Debug)]
pub enum Outbound {
    Publish(Message),
    /// Close the connection (taken over by a new one with the same client
    /// id, or its account was disabled).
    Close(&'static str),
}

struct Live {
    id: u64,
    tx: mpsc::Sender<Outbound>,
}

struct Session {
    role: Role,
    clean: bool,
    /// Which session this is: a connection hands back what it did not
    /// deliver only to the session it belonged to.
    generation: u64,
    live: Option<Live>,
    /// Filters as subscribed (with any `$share/` prefix) and their QoS.
    subs: HashMap<String, QoS>,
    /// QoS 1 messages kept while a persistent session is offline.
    queue: VecDeque<Message>,
}

struct Shared {
    group: String,
    filter: String,
    members: Vec<(Arc<str>, QoS)>,
    next: usize,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Arc<str>, Session>,
    /// Filters without wildcards, by topic.
    exact: HashMap<String, Vec<(Arc<str>, QoS)>>,
    wild: Vec<(String, Arc<str>, QoS)>,
    shared: Vec<Shared>,
    retained: HashMap<String, Message>,
    next_id: u64,
    /// When each client id was last kicked (a login checked before the
    /// kick must not get in after it).
    kicked: HashMap<String, Instant>,
}

/// The broker's routing table.
pub struct Router {
    state: Mutex<State>,
    /// Messages held per client (in its connection's queue, or its offline
    /// session); beyond that new ones are dropped and counted.
    max_queued: usize,
}

/// A client's connection, as registered.
pub struct Connected {
    pub id: u64,
    pub generation: u64,
    pub session_present: bool,
    /// What the session kept while offline, to deliver first.
    pub backlog: Vec<Message>,
}

/// Why a connection was not registered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another kind of client holds this client id, live or in a kept
    /// session (a provisioning login must not push a locker or the server
    /// off, nor take its queued messages).
    ClientIdInUse,
    /// The account was disabled while its login was being checked.
    Kicked,
}

impl Router {
    pub fn new(max_queued: usize) -> Self {
        Router {
            state: Mutex::default(),
            max_queued,
        }
    }

    pub fn max_queued(&self) -> usize {
        self.max_queued
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it
        // (every change is a few inserts and removes).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection for `client_id` whose login was checked
    /// from `login_started`, taking over a live one of the same role. A
    /// persistent session is resumed only for the same role.
    pub fn connect(
        &self,
        client_id: &Arc<str>,
        role: Role,
        clean: bool,
        tx: mpsc::Sender<Outbound>,
        login_started: Instant,
    ) -> Result<Connected, Refused> {
        let mut st = self.state();
        if st
            .kicked
            .get(&**client_id)
            .is_some_and(|at| *at >= login_started)
        {
            return Err(Refused::Kicked);
        }
        if st.sessions.get(client_id).is_some_and(|s| s.role != role) {
            return Err(Refused::ClientIdInUse);
        }
        st.next_id += 1;
        let id = st.next_id;
        let resumable = st
            .sessions
            .get(client_id)
            .is_some_and(|s| !clean && !s.clean && s.role == role);
        if let Some(old) = st.sessions.get_mut(client_id).and_then(|s| s.live.take()) {
            let _ = old
                .tx
                .try_send(Outbound::Close("taken over by a new connection"));
        }
        if let Some(session) = st.sessions.get_mut(client_id).filter(|_| resumable) {
            session.live = Some(Live { id, tx });
            let backlog = session.queue.drain(..).collect();
            return Ok(Connected {
                id,
                generation: session.generation,
                session_present: true,
                backlog,
            });
        }
        remove_session(&mut st, client_id);
        st.sessions.insert(
            client_id.clone(),
            Session {
                role,
                clean,
                generation: id,
                live: Some(Live { id, tx }),
                subs: HashMap::new(),
                queue: VecDeque::new(),
            },
        );
        Ok(Connected {
            id,
            generation: id,
            session_present: false,
            backlog: Vec::new(),
        })
    }

    /// The connection `id` (of session `generation`) of `client_id` ended;
    /// `unacked` is what it had not delivered, and `rx` holds what was
    /// routed to it since (drained here, under the lock, so nothing routed
    /// in between is lost). Kept for a persistent session, or handed to
    /// the connection of the same session that took over. Returns whether
    /// the connection was still the session's live one.
    pub fn disconnect(
        &self,
        client_id: &Arc<str>,
        id: u64,
        generation: u64,
        mut unacked: Vec<Message>,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> bool {
        let mut st = self.state();
        while let Ok(out) = rx.try_recv() {
            if let Outbound::Publish(m) = out {
                unacked.push(m);
            }
        }
        let max = self.max_queued;
        let Some(session) = st.sessions.get_mut(client_id) else {
            return false;
        };
        if session.generation != generation {
            return false;
        }
        let ours = session.live.as_ref().is_some_and(|l| l.id == id);
        if ours && session.clean {
            remove_session(&mut st, client_id);
            return true;
        }
        if ours {
            session.live = None;
        }
        if session.clean {
            return false;
        }
        // Not delivered: to the connection that took over, else kept
        // first in line for the next one.
        let mut keep = Vec::new();
        for m in unacked {
            if m.qos == QoS::AtMostOnce {
                continue;
            }
            match &session.live {
                Some(live) => match live.tx.try_send(Outbound::Publish(m)) {
                    Ok(()) => {}
                    Err(
                        mpsc::error::TrySendError::Full(Outbound::Publish(m))
                        | mpsc::error::TrySendError::Closed(Outbound::Publish(m)),
                    ) => keep.push(m),
                    Err(_) => {}
                },
                None => keep.push(m),
            }
        }
        for m in keep.into_iter().rev() {
            if session.queue.len() < max {
                session.queue.push_front(m);
            }
        }
        ours
    }

    /// Closes `client_id`'s live connection, if any, forgets its session,
    /// and refuses a login of it checked before now.
    pub fn kick(&self, client_id: &str, why: &'static str) -> bool {
        let mut st = self.state();
        let now = Instant::now();
        st.kicked
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        st.kicked.insert(client_id.to_string(), now);
        let Some(key) = st.sessions.get_key_value(client_id).map(|(k, _)| k.clone()) else {
            return false;
        };
        let live = st.sessions.get_mut(&key).and_then(|s| s.live.take());
        remove_session(&mut st, &key);
        match live {
            Some(live) => {
                let _ = live.tx.try_send(Outbound::Close(why));
                true
            }
            None => false,
        }
    }

    /// Adds (or replaces) a subscription; returns the retained messages it
    /// matches.
    pub fn subscribe(&self, client_id: &Arc<str>, filter: &str, qos: QoS) -> Vec<Message> {
        let mut st = self.state();
        let Some(session) = st.sessions.get_mut(client_id) else {
            return Vec::new();
        };
        if session.subs.insert(filter.to_string(), qos).is_some() {
            unindex(&mut st, client_id, filter);
        }
        let (group, plain) = topic::split_share(filter);
        let who = (client_id.clone(), qos);
        match group {
            Some(group) => match st
                .shared
                .iter_mut()
                .find(|s| s.group == group && s.filter == plain)
            {
                Some(s) => s.members.push(who),
                None => st.shared.push(Shared {
                    group: group.to_string(),
                    filter: plain.to_string(),
                    members: vec![who],
                    next: 0,
                }),
            },
            None if topic::has_wildcards(plain) => {
                st.wild.push((plain.to_string(), who.0, who.1));
            }
            None => st.exact.entry(plain.to_string()).or_default().push(who),
        }
        // Shared subscriptions get no retained messages (as in MQTT 5).
        if group.is_some() {
            return Vec::new();
        }
        st.retained
            .values()
            .filter(|m| topic::matches(plain, &m.topic))
            .map(|m| Message {
                qos: min_qos(m.qos, qos),
                ..m.clone()
            })
            .collect()
    }

    pub fn unsubscribe(&self, client_id: &Arc<str>, filter: &str) {
        let mut st = self.state();
        let removed = st
            .sessions
            .get_mut(client_id)
            .is_some_and(|s| s.subs.remove(filter).is_some());
        if removed {
            unindex(&mut st, client_id, filter);
        }
    }

    /// Keeps (or, with an empty payload, clears) the retained message of
    /// its topic.
    pub fn retain(&self, message: &Message) {
        let mut st = self.state();
        if message.payload.is_empty() {
            st.retained.remove(&*message.topic);
        } else {
            st.retained
                .insert(message.topic.to_string(), message.clone());
        }
    }

    /// Delivers `message` to every matching subscription: to live
    /// connections at once, kept for offline persistent sessions (QoS 1).
    /// Returns how many it reached.
    pub fn publish(&self, message: &Message) -> usize {
        let mut dropped: Vec<Arc<str>> = Vec::new();
        let reached = self.route(message, &mut dropped);
        // Logged after the lock is released: a slow log writer must not
        // hold every client's publishes.
        for client in dropped {
            tracing::warn!(client_id = %client, topic = %message.topic, "MQTT client too far behind, or its offline session full; message dropped");
            count_rejection("mqtt_queue_full");
        }
        reached
    }

    fn route(&self, message: &Message, dropped: &mut Vec<Arc<str>>) -> usize {
        let mut st = self.state();
        let mut targets: Vec<(Arc<str>, QoS)> = Vec::new();
        if let Some(subs) = st.exact.get(&*message.topic) {
            targets.extend(subs.iter().cloned());
        }
        targets.extend(
            st.wild
                .iter()
                .filter(|(f, _, _)| topic::matches(f, &message.topic))
                .map(|(_, c, q)| (c.clone(), *q)),
        );
        // One member per shared group: the next live one, else the next.
        let State {
            shared, sessions, ..
        } = &mut *st;
        for group in shared
            .iter_mut()
            .filter(|g| topic::matches(&g.filter, &message.topic))
        {
            let n = group.members.len();
            let pick = (0..n)
                .map(|i| (group.next + i) % n)
                .find(|&i| {
                    sessions
                        .get(&group.members[i].0)
                        .is_some_and(|s| s.live.is_some())
                })
                .unwrap_or(group.next % n.max(1));
            if let Some(member) = group.members.get(pick) {
                targets.push(member.clone());
                group.next = pick + 1;
            }
        }
        let mut reached = 0;
        for (client, sub_qos) in targets {
            let Some(session) = st.sessions.get_mut(&client) else {
                continue;
            };
            let mut m = Message {
                qos: min_qos(message.qos, sub_qos),
                retain: false,
                ..message.clone()
            };
            if let Some(live) = &session.live {
                match live.tx.try_send(Outbound::Publish(m)) {
                    Ok(()) => {
                        reached += 1;
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.push(client);
                        continue;
                    }
                    // Its task is gone without saying so: offline now.
                    Err(mpsc::error::TrySendError::Closed(Outbound::Publish(back))) => {
                        session.live = None;
                        m = back;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => continue,
                }
            }
            if m.qos == QoS::AtMostOnce || session.clean {
                continue;
            }
            if session.queue.len() < self.max_queued {
                session.queue.push_back(m);
                reached += 1;
            } else {
                dropped.push(client);
            }
        }
        reached
    }
}

/// Forgets a session and its subscriptions.
fn remove_session(st: &mut State, client_id: &Arc<str>) {
    if let Some(session) = st.sessions.remove(client_id) {
        for filter in session.subs.keys() {
            unindex(st, client_id, filter);
        }
    }
}

/// Removes `client_id`'s subscription `filter` from the index.
fn unindex(st: &mut State, client_id: &Arc<str>, filter: &str) {
    let (group, plain) = topic::split_share(filter);
    match group {
        Some(group) => {
            for s in st
                .shared
                .iter_mut()
                .filter(|s| s.group == group && s.filter == plain)
            {
                s.members.retain(|(c, _)| c != client_id);
            }
            st.shared.retain(|s| !s.members.is_empty());
        }
        None if topic::has_wildcards(plain) => {
            st.wild.retain(|(f, c, _)| !(f == plain && c == client_id));
        }
        None => {
            if let Some(subs) = st.exact.get_mut(plain) {
                subs.retain(|(c, _)| c != client_id);
                if subs.is_empty() {
                    st.exact.remove(plain);
                }
            }
        }
    }
}

/// The lower of two QoS levels (`QoS` is not `Ord`).
pub fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn message(topic: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: false,
        }
    }

    fn connect(
        router: &Router,
        id: &Arc<str>,
        role: Role,
        clean: bool,
    ) -> (Result<Connected, Refused>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(16);
        (router.connect(id, role, clean, tx, Instant::now()), rx)
    }

    #[test]
    fn what_is_routed_while_a_connection_ends_is_kept_for_its_session() {
        let router = Router::new(100);
        let id: Arc<str> = "locker-a".into();
        let role = Role::Locker(Uuid::nil());
        let (c, mut rx) = connect(&router, &id, role, false);
        let c = c.expect("connected");
        router.subscribe(&id, "t", QoS::AtLeastOnce);
        // Routed to the live connection, which ends before reading it.
        assert_eq!(router.publish(&message("t")), 1);
        assert!(router.disconnect(&id, c.id, c.generation, vec![message("t")], &mut rx));
        // Offline now: kept too.
        assert_eq!(router.publish(&message("t")), 1);
        let (again, _rx) = connect(&router, &id, role, false);
        let again = again.expect("connected");
        assert!(again.session_present);
        assert_eq!(again.backlog.len(), 3, "unacked, drained, and queued");
    }

    #[test]
    fn another_kind_of_client_cannot_take_a_client_id() {
        let router = Router::new(100);
        let id: Arc<str> = "locker-a".into();
        let (locker, _rx) = connect(&router, &id, Role::Locker(Uuid::nil()), false);
        assert!(locker.is_ok());
        let (prov, _rx2) = connect(&router, &id, Role::Provisioning, true);
        assert_eq!(prov.err(), Some(Refused::ClientIdInUse));
    }

    #[test]
    fn a_login_checked_before_a_kick_is_refused() {
        let router = Router::new(100);
        let id: Arc<str> = "locker-a".into();
        let started = Instant::now();
        router.kick(&id, "disabled");
        let (tx, _rx) = mpsc::channel(4);
        assert_eq!(
            router
                .connect(&id, Role::Locker(Uuid::nil()), false, tx, started)
                .err(),
            Some(Refused::Kicked)
        );
        let (after, _rx) = connect(&router, &id, Role::Locker(Uuid::nil()), false);
        assert!(after.is_ok(), "a login checked after the kick goes in");
    }

    #[test]
    fn a_taken_over_connection_hands_its_unsent_messages_to_the_next() {
        let router = Router::new(100);
        let id: Arc<str> = "locker-a".into();
        let role = Role::Locker(Uuid::nil());
        let (first, _rx1) = connect(&router, &id, role, false);
        let first = first.expect("connected");
        let (second, mut rx2) = connect(&router, &id, role, false);
        let second = second.expect("connected");
        assert_eq!(first.generation, second.generation, "the same session");
        let (_tx, mut empty) = mpsc::channel(1);
        assert!(!router.disconnect(
            &id,
            first.id,
            first.generation,
            vec![message("t")],
            &mut empty
        ));
        assert!(matches!(rx2.try_recv(), Ok(Outbound::Publish(_))));
        // A clean session's leftovers go nowhere, and its session goes.
        let clean: Arc<str> = "auto-1".into();
        let (c, mut rx) = connect(&router, &clean, Role::Bridge, true);
        let c = c.expect("connected");
        assert!(router.disconnect(&clean, c.id, c.generation, vec![message("t")], &mut rx));
        let (again, _rx) = connect(&router, &clean, Role::Bridge, false);
        assert!(!again.expect("connected").session_present);
    }
}
