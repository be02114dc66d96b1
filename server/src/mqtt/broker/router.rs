//! The broker's shared state: sessions (live or persistent), the
//! subscription index, retained messages, and the routing of a publish to
//! every matching subscriber (one member per shared group).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
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
    pub session_present: bool,
    /// What the session kept while offline, to deliver first.
    pub backlog: Vec<Message>,
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

    /// Registers a connection for `client_id`, taking over any live one.
    /// A persistent session is resumed only for the same role.
    pub fn connect(
        &self,
        client_id: &Arc<str>,
        role: Role,
        clean: bool,
        tx: mpsc::Sender<Outbound>,
    ) -> Connected {
        let mut st = self.state();
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
            return Connected {
                id,
                session_present: true,
                backlog,
            };
        }
        remove_session(&mut st, client_id);
        st.sessions.insert(
            client_id.clone(),
            Session {
                role,
                clean,
                live: Some(Live { id, tx }),
                subs: HashMap::new(),
                queue: VecDeque::new(),
            },
        );
        Connected {
            id,
            session_present: false,
            backlog: Vec::new(),
        }
    }

    /// The connection `id` of `client_id` ended; `unacked` is what it had
    /// not delivered (kept for a persistent session, or handed to the
    /// connection that took over).
    pub fn disconnect(&self, client_id: &Arc<str>, id: u64, unacked: Vec<Message>) {
        let mut st = self.state();
        let max = self.max_queued;
        let Some(session) = st.sessions.get_mut(client_id) else {
            return;
        };
        let ours = session.live.as_ref().is_some_and(|l| l.id == id);
        if ours && session.clean {
            remove_session(&mut st, client_id);
            return;
        }
        if ours {
            session.live = None;
            for m in unacked.into_iter().rev() {
                if m.qos != QoS::AtMostOnce && session.queue.len() < max {
                    session.queue.push_front(m);
                }
            }
            return;
        }
        // Taken over: what this connection had not delivered goes to the
        // one that replaced it.
        if let (Some(live), false) = (&session.live, session.clean) {
            for m in unacked {
                if m.qos != QoS::AtMostOnce {
                    let _ = live.tx.try_send(Outbound::Publish(m));
                }
            }
        }
    }

    /// Closes `client_id`'s live connection, if any.
    pub fn kick(&self, client_id: &str, why: &'static str) -> bool {
        let mut st = self.state();
        let Some(key) = st.sessions.get_key_value(client_id).map(|(k, _)| k.clone()) else {
            return false;
        };
        let live = st.sessions.get_mut(&key).and_then(|s| s.live.take());
        // A kicked account must log in again: its session goes too.
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
            let m = Message {
                qos: min_qos(message.qos, sub_qos),
                retain: false,
                ..message.clone()
            };
            match &session.live {
                Some(live) => match live.tx.try_send(Outbound::Publish(m)) {
                    Ok(()) => reached += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(client_id = %client, topic = %message.topic, "MQTT client too far behind; message dropped");
                        count_rejection("mqtt_queue_full");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                },
                None if m.qos != QoS::AtMostOnce => {
                    if session.queue.len() < self.max_queued {
                        session.queue.push_back(m);
                        reached += 1;
                    } else {
                        tracing::warn!(client_id = %client, topic = %message.topic, "offline MQTT session full; message dropped");
                        count_rejection("mqtt_queue_full");
                    }
                }
                None => {}
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
