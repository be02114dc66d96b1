//! The one owner of the hub's subscription state: a task fed by commands
//! (sockets joining and leaving, subscribing and unsubscribing) and by the
//! core's `log_tail`. Log envelopes are read from the database once per
//! channel (the log is the truth; `log_tail` only says where to look),
//! encoded once, and the same bytes queued to every subscriber. A
//! subscriber that resumes from a `seq` gets the log after it first
//! (`meta.replay = true`), then the live envelopes, with no gap and no
//! duplicate; one whose queue is full is disconnected with a reconnect
//! code, never silently skipped.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use lockstep_core::{
    eventstore::channels::{self, Appended, Channel, Envelope},
    Services,
};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::{
    cluster_worker::{self, Done, Op},
    protocol::{self, code},
};
use crate::cluster::{
    bus::{Bus, FrameMsg, MemberMark, OccupiedMsg},
    Inbound, NodeInfo,
};
use lockstep_core::cluster::presence::{self as shared_presence, Joined};

/// How often a clustered hub asks the log which channels were appended to
/// lately, whatever the wake-ups said (a wake-up lost between nodes costs
/// at most this), and how far back it looks (each append is seen by three
/// checks, however late its transaction committed after its time).
const REREAD_EVERY: Duration = Duration::from_secs(5);
const REREAD_WINDOW: Duration = Duration::from_secs(15);

/// How long an occupancy question waits for the other nodes.
const OCCUPANCY_WAIT: Duration = Duration::from_secs(2);

/// How many envelopes one log read takes.
const READ_BATCH: i64 = 500;

/// Test seam: holds each subscriber's first read this long after it was
/// made, so live envelopes land while it catches up (the race the resume
/// must survive, made certain instead of likely).
#[cfg(feature = "testing")]
pub static CATCH_UP_DELAY_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What a connection is sent.
#[derive(Clone, Debug)]
pub enum Out {
    Frame(Utf8Bytes),
    /// A subscription the registry refused (its `subscription_error`
    /// frame): the connection forgets the channel, so it does not count
    /// against the connection's channel limit.
    Refused(String, Utf8Bytes),
    /// Close with this code and reason.
    Close(u16, &'static str),
}

pub type SocketId = Arc<str>;

enum Command {
    Join {
        socket: SocketId,
        out: mpsc::Sender<Out>,
        kill: tokio::sync::oneshot::Sender<(u16, &'static str)>,
    },
    Leave {
        socket: SocketId,
    },
    /// A log channel, already authorized.
    Subscribe {
        socket: SocketId,
        channel: Channel,
        resume: Option<i64>,
    },
    Unsubscribe {
        socket: SocketId,
        channel: String,
    },
    /// A channel outside the log (public, or another app's private one):
    /// only what is published to it through the HTTP API reaches it.
    SubscribeEphemeral {
        socket: SocketId,
        channel: String,
    },
    /// A presence channel (signed, with its member): an ephemeral channel
    /// whose members are announced.
    SubscribePresence {
        socket: SocketId,
        channel: String,
        member: Member,
    },
    /// A client event (`client-…`) from a subscriber, to the others.
    ClientEvent {
        socket: SocketId,
        channel: String,
        event: String,
        data: serde_json::Value,
    },
    /// A presence channel's members (None: no such channel occupied).
    Users {
        channel: String,
        reply: tokio::sync::oneshot::Sender<Vec<String>>,
    },
    /// One HTTP API publish: the same bytes to every subscriber of
    /// `channel` but `except`.
    Publish {
        channel: String,
        frame: Utf8Bytes,
        except: Option<String>,
        /// Also to the other nodes (a local publish; not one that came
        /// from them).
        forward: bool,
    },
    /// How many sockets follow each channel (with the prefix).
    Occupancy {
        prefix: Option<String>,
        reply: tokio::sync::oneshot::Sender<Vec<Occupied>>,
    },
    /// A subscriber's catch-up task sent the log up to `last` (or the
    /// head was `last`), or failed.
    CaughtUp {
        socket: SocketId,
        channel: String,
        generation: u64,
        last: Result<i64, String>,
    },
    /// Read a channel again (after a failed read).
    Retry {
        channel: String,
    },
    /// The live read of a channel.
    Read {
        channel: String,
        read: Result<channels::LogRead, String>,
    },
    /// From the other nodes, or this node's lease keeper.
    Inbound(Inbound),
    /// An answer of the clustered presence worker.
    Presence(Done),
    /// Answered once the presence worker's earlier answers are handled.
    PresenceBarrier(tokio::sync::oneshot::Sender<()>),
    /// What this node's last sweep removed: announced, then answered.
    Announce {
        swept: crate::cluster::Swept,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

/// A clustered hub's link to the other nodes.
pub struct ClusterLink {
    pub node: NodeInfo,
    pub bus: Bus,
}

/// The handle connections hold.
#[derive(Clone)]
pub struct Registry {
    tx: mpsc::UnboundedSender<Command>,
    cluster: Option<(Arc<ClusterLink>, lockstep_core::db::Db)>,
}

impl Registry {
    /// Registers a connection: frames go to `out`; `kill` closes it with
    /// a code even when `out` is full.
    pub fn join(
        &self,
        socket: SocketId,
        out: mpsc::Sender<Out>,
        kill: tokio::sync::oneshot::Sender<(u16, &'static str)>,
    ) {
        let _ = self.tx.send(Command::Join { socket, out, kill });
    }
    pub fn leave(&self, socket: SocketId) {
        let _ = self.tx.send(Command::Leave { socket });
    }
    pub fn subscribe(&self, socket: SocketId, channel: Channel, resume: Option<i64>) {
        let _ = self.tx.send(Command::Subscribe {
            socket,
            channel,
            resume,
        });
    }
    pub fn unsubscribe(&self, socket: SocketId, channel: String) {
        let _ = self.tx.send(Command::Unsubscribe { socket, channel });
    }
    pub fn subscribe_ephemeral(&self, socket: SocketId, channel: String) {
        let _ = self
            .tx
            .send(Command::SubscribeEphemeral { socket, channel });
    }
    /// Queues `frame` to every subscriber of `channel` but `except`, on
    /// every node.
    pub fn publish(&self, channel: String, frame: Utf8Bytes, except: Option<String>) {
        let _ = self.tx.send(Command::Publish {
            channel,
            frame,
            except,
            forward: true,
        });
    }
    /// Joins a presence channel as `member` (already verified).
    pub fn subscribe_presence(&self, socket: SocketId, channel: String, member: Member) {
        let _ = self.tx.send(Command::SubscribePresence {
            socket,
            channel,
            member,
        });
    }
    /// A client event from `socket`, for the other subscribers of
    /// `channel` (the socket must have joined it).
    pub fn client_event(
        &self,
        socket: SocketId,
        channel: String,
        event: String,
        data: serde_json::Value,
    ) {
        let _ = self.tx.send(Command::ClientEvent {
            socket,
            channel,
            event,
            data,
        });
    }
    /// The occupied channels (whose names start with `prefix`) and how
    /// many sockets (and, on presence channels, users) follow each.
    /// Clustered: every node's sockets, and the cluster's members.
    pub async fn occupancy(&self, prefix: Option<String>) -> Vec<Occupied> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command::Occupancy {
            prefix: prefix.clone(),
            reply,
        });
        let local = answer.await.unwrap_or_default();
        let Some((link, db)) = &self.cluster else {
            return local;
        };
        let others = lockstep_core::cluster::nodes::live(db, lockstep_core::now_ms())
            .await
            .map(|n| n.len().saturating_sub(1))
            .unwrap_or(0);
        let remote = link.bus.occupancy(prefix, others, OCCUPANCY_WAIT).await;
        let users: HashMap<String, i64> = shared_presence::user_counts(db)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut all: HashMap<String, usize> = HashMap::new();
        for o in local
            .iter()
            .map(|o| (o.name.clone(), o.subscriptions))
            .chain(remote.into_iter().map(|o| (o.name, o.subscriptions)))
        {
            *all.entry(o.0).or_default() += o.1;
        }
        let mut merged: Vec<Occupied> = all
            .into_iter()
            .map(|(name, subscriptions)| Occupied {
                users: name
                    .starts_with("presence-")
                    .then(|| users.get(&name).copied().unwrap_or(0) as usize),
                name,
                subscriptions,
            })
            .collect();
        merged.sort_by(|a, b| a.name.cmp(&b.name));
        merged
    }
    /// The user ids present on a presence channel (clustered: on any
    /// node).
    pub async fn users(&self, channel: String) -> Vec<String> {
        if let Some((_, db)) = &self.cluster {
            return match shared_presence::members(db, &channel).await {
                Ok(members) => members.into_iter().map(|m| m.user_id).collect(),
                Err(e) => {
                    tracing::error!(error = %e, channel = %channel, "reading a presence channel's members failed");
                    Vec::new()
                }
            };
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command::Users { channel, reply });
        answer.await.unwrap_or_default()
    }
    /// Clustered: waits until the presence worker's answers so far are
    /// handled (at shutdown).
    pub async fn presence_settled(&self) {
        let (done, settled) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command::PresenceBarrier(done));
        let _ = settled.await;
    }
    /// Announces what a sweep removed, and waits until its frames are
    /// queued.
    pub async fn announce(&self, swept: crate::cluster::Swept) {
        let (done, announced) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command::Announce { swept, done });
        let _ = announced.await;
    }
}

/// One occupied channel.
#[derive(Clone, Debug)]
pub struct Occupied {
    pub name: String,
    pub subscriptions: usize,
    /// Distinct members, on a presence channel.
    pub users: Option<usize>,
}

/// A presence channel's member, as `channel_data` names it.
#[derive(Clone, Debug)]
pub struct Member {
    pub user_id: String,
    pub user_info: serde_json::Value,
}

pub use super::events::HubEvent;

/// What the registry is started with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Distinct users one presence channel admits (Pusher: 100).
    pub max_presence_members: usize,
}

/// A presence channel's members: each user once, however many of their
/// connections joined.
#[derive(Default)]
struct Presence {
    /// user id → (user_info, how many sockets).
    members: HashMap<String, (serde_json::Value, usize)>,
    by_socket: HashMap<SocketId, String>,
}

/// One subscriber of a log channel.
enum Sub {
    /// Its catch-up task (replay, or the head read) is under way: live
    /// envelopes wait here, at most `MAX_BUFFER`.
    CatchingUp {
        generation: u64,
        /// (seq, frame); no frame for an envelope that spares it.
        buffer: Vec<(i64, Option<Utf8Bytes>)>,
        task: tokio::task::AbortHandle,
    },
    /// Live; envelopes up to `after` it has already had.
    Live { after: i64 },
}

/// Live envelopes a catching-up subscriber may have waiting.
const MAX_BUFFER: usize = 10_000;

struct LogChannel {
    channel: Channel,
    subs: HashMap<SocketId, Sub>,
    /// The last seq read and pushed (None until a subscriber's read said
    /// where the channel stands).
    pushed: Option<i64>,
    reading: bool,
    /// An append arrived while a read ran: read again after it.
    stale: bool,
}

struct Socket {
    out: mpsc::Sender<Out>,
    kill: Option<tokio::sync::oneshot::Sender<(u16, &'static str)>>,
    channels: HashSet<String>,
}

struct State {
    services: Services,
    tx: mpsc::UnboundedSender<Command>,
    sockets: HashMap<SocketId, Socket>,
    channels: HashMap<String, LogChannel>,
    next_generation: u64,
    /// Channels outside the log, and who follows them.
    ephemeral: HashMap<String, HashSet<SocketId>>,
    /// The members of presence channels (also in `ephemeral`).
    presence: HashMap<String, Presence>,
    config: Config,
    /// Where webhook-worthy events go, when webhooks are configured.
    events: Option<mpsc::UnboundedSender<HubEvent>>,
    /// Clustered: the other nodes, and the presence worker.
    cluster: Option<Arc<ClusterLink>>,
    presence_ops: Option<mpsc::UnboundedSender<Op>>,
    /// Clustered presence joins asked of the worker and not yet answered.
    pending_presence: HashMap<(SocketId, String), u64>,
    /// Clustered: per presence channel, the version of the last
    /// announcement applied for each user (an older one arriving late,
    /// from another node, is dropped).
    presence_versions: HashMap<String, HashMap<String, i64>>,
}

/// Starts the registry task; it runs until the process ends. `events`
/// receives what webhooks report.
pub fn start(
    services: Services,
    config: Config,
    events: Option<mpsc::UnboundedSender<HubEvent>>,
    cluster: Option<(Arc<ClusterLink>, mpsc::UnboundedReceiver<Inbound>)>,
) -> Registry {
    let (tx, rx) = mpsc::unbounded_channel();
    let log = services.log_tail.subscribe();
    let (link, inbound) = match cluster {
        Some((link, inbound)) => (Some(link), Some(inbound)),
        None => (None, None),
    };
    let presence_ops = link.as_ref().map(|l| {
        let tx = tx.clone();
        cluster_worker::start(
            services.db.clone(),
            l.node.node_id.clone(),
            events.clone(),
            move |done| {
                let _ = tx.send(Command::Presence(done));
            },
        )
    });
    let handle_cluster = link.clone().map(|l| (l, services.db.clone()));
    let state = State {
        services,
        tx: tx.clone(),
        sockets: HashMap::new(),
        channels: HashMap::new(),
        next_generation: 0,
        ephemeral: HashMap::new(),
        presence: HashMap::new(),
        config,
        events,
        cluster: link,
        presence_ops,
        pending_presence: HashMap::new(),
        presence_versions: HashMap::new(),
    };
    if let Some(mut inbound) = inbound {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = inbound.recv().await {
                if tx.send(Command::Inbound(m)).is_err() {
                    return;
                }
            }
        });
    }
    tokio::spawn(run(state, rx, log));
    Registry {
        tx,
        cluster: handle_cluster,
    }
}

async fn run(
    mut st: State,
    mut rx: mpsc::UnboundedReceiver<Command>,
    mut log: broadcast::Receiver<Appended>,
) {
    let clustered = st.cluster.is_some();
    let mut reread = tokio::time::interval(REREAD_EVERY);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(c) => st.handle(c),
                None => return,
            },
            _ = reread.tick(), if clustered => st.read_recent(),
            appended = log.recv() => match appended {
                Ok(a) => st.appended(&a.channel),
                // Missed some: the log has them; read every channel.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("lockstep_hub_log_lagged_total").increment(n);
                    st.read_all();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

impl State {
    fn handle(&mut self, command: Command) {
        match command {
            Command::Join { socket, out, kill } => {
                self.sockets.insert(
                    socket,
                    Socket {
                        out,
                        kill: Some(kill),
                        channels: HashSet::new(),
                    },
                );
            }
            Command::Retry { channel } => self.appended(&channel),
            Command::Leave { socket } => self.drop_socket(&socket),
            Command::Subscribe {
                socket,
                channel,
                resume,
            } => self.subscribe(socket, channel, resume),
            Command::Unsubscribe { socket, channel } => {
                if let Some(s) = self.sockets.get_mut(&socket) {
                    s.channels.remove(&channel);
                }
                self.pending_presence
                    .remove(&(socket.clone(), channel.clone()));
                self.remove_sub(&socket, &channel);
            }
            Command::SubscribeEphemeral { socket, channel } => {
                let Some(s) = self.sockets.get_mut(&socket) else {
                    return;
                };
                s.channels.insert(channel.clone());
                let _ = s.out.try_send(Out::Frame(
                    protocol::subscription_succeeded(&channel, &json!({})).into(),
                ));
                self.join_ephemeral(socket, channel);
            }
            Command::SubscribePresence {
                socket,
                channel,
                member,
            } => self.subscribe_presence(socket, channel, member),
            Command::ClientEvent {
                socket,
                channel,
                event,
                data,
            } => self.client_event(socket, channel, event, data),
            Command::Users { channel, reply } => {
                let users = self
                    .presence
                    .get(&channel)
                    .map(|p| p.members.keys().cloned().collect())
                    .unwrap_or_default();
                let _ = reply.send(users);
            }
            Command::Publish {
                channel,
                frame,
                except,
                forward,
            } => {
                if forward {
                    self.forward(&channel, &frame, except.as_deref());
                }
                self.publish(&channel, frame, except.as_deref())
            }
            Command::Occupancy { prefix, reply } => {
                let _ = reply.send(self.local_occupancy(prefix.as_deref()));
            }
            Command::CaughtUp {
                socket,
                channel,
                generation,
                last,
            } => self.caught_up(socket, channel, generation, last),
            Command::Read { channel, read } => self.read_done(channel, read),
            Command::Inbound(m) => self.inbound(m),
            Command::Presence(done) => self.presence_done(done),
            Command::PresenceBarrier(ack) => match &self.presence_ops {
                Some(ops) => {
                    if let Err(e) = ops.send(Op::Barrier(ack)) {
                        if let Op::Barrier(ack) = e.0 {
                            let _ = ack.send(());
                        }
                    }
                }
                None => {
                    let _ = ack.send(());
                }
            },
            Command::Announce { swept, done } => {
                self.swept(swept);
                let _ = done.send(());
            }
        }
    }

    /// Asks the log which channels were appended to lately; those this
    /// node follows are read (as for a wake-up).
    fn read_recent(&self) {
        if self.channels.is_empty() {
            return;
        }
        let (db, tx) = (self.services.db.clone(), self.tx.clone());
        tokio::spawn(async move {
            let since = lockstep_core::now_ms() - REREAD_WINDOW.as_millis() as i64;
            match channels::appended_since(&db, since).await {
                Ok(names) => {
                    let _ = tx.send(Command::Inbound(Inbound::Wake(names)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the periodic log check failed; the next one retries")
                }
            }
        });
    }

    /// Every followed channel, read from where it stands.
    fn read_all(&mut self) {
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            self.appended(&name);
        }
    }

    /// `frame` to the other nodes' subscribers of `channel`.
    fn forward(&self, channel: &str, frame: &Utf8Bytes, except: Option<&str>) {
        self.forward_marked(channel, frame, except, None);
    }

    fn forward_marked(
        &self,
        channel: &str,
        frame: &Utf8Bytes,
        except: Option<&str>,
        member: Option<MemberMark>,
    ) {
        if let Some(link) = &self.cluster {
            link.bus.frame(&FrameMsg {
                channel: channel.to_string(),
                frame: frame.as_str().to_string(),
                except: except.map(str::to_string),
                member,
            });
        }
    }

    /// Whether the announcement `version` about `user_id` on `channel` is
    /// newer than what this node applied (and, if so, records it).
    fn fresh(&mut self, channel: &str, user_id: &str, version: i64) -> bool {
        let users = self
            .presence_versions
            .entry(channel.to_string())
            .or_default();
        match users.get(user_id) {
            Some(seen) if *seen >= version => false,
            _ => {
                users.insert(user_id.to_string(), version);
                true
            }
        }
    }

    /// A `member_added`/`member_removed` to every node's subscribers, each
    /// node delivering it only when it is newer than what it applied.
    fn announce_member(
        &mut self,
        channel: &str,
        frame: Utf8Bytes,
        except: Option<&str>,
        mark: MemberMark,
    ) {
        self.forward_marked(channel, &frame, except, Some(mark.clone()));
        if self.fresh(channel, &mark.user_id, mark.version) {
            self.publish(channel, frame, except);
        } else {
            metrics::counter!("lockstep_cluster_stale_presence_total").increment(1);
        }
    }

    /// `frame` to every subscriber of `channel`, here and on the other
    /// nodes, but `except`.
    fn broadcast(&mut self, channel: &str, frame: Utf8Bytes, except: Option<&str>) {
        self.forward(channel, &frame, except);
        self.publish(channel, frame, except);
    }

    fn inbound(&mut self, m: Inbound) {
        match m {
            Inbound::Wake(channels) => {
                metrics::counter!("lockstep_cluster_wakeups_in_total")
                    .increment(channels.len() as u64);
                let unique: HashSet<String> = channels.into_iter().collect();
                for name in unique {
                    self.appended(&name);
                }
            }
            Inbound::WakeAll => self.read_all(),
            Inbound::Frame(f) => {
                metrics::counter!("lockstep_cluster_frames_in_total").increment(1);
                if let Some(mark) = &f.member {
                    if !self.fresh(&f.channel, &mark.user_id, mark.version) {
                        metrics::counter!("lockstep_cluster_stale_presence_total").increment(1);
                        return;
                    }
                }
                self.publish(&f.channel, f.frame.into(), f.except.as_deref());
            }
            Inbound::Occupancy { prefix, reply } => {
                let list: Vec<OccupiedMsg> = self
                    .local_occupancy(prefix.as_deref())
                    .into_iter()
                    .map(|o| OccupiedMsg {
                        name: o.name,
                        subscriptions: o.subscriptions,
                    })
                    .collect();
                if let Some(link) = &self.cluster {
                    link.bus.reply(reply, &list);
                }
            }
            Inbound::Gone(swept) => self.swept(swept),
            Inbound::LeaseLost => {
                let sockets: Vec<SocketId> = self.sockets.keys().cloned().collect();
                for socket in sockets {
                    self.close(
                        &socket,
                        code::RECONNECT,
                        "rejoin: this node was out of touch",
                    );
                }
            }
        }
    }

    /// What a dead node (or this one, at exit) left: `member_removed`
    /// everywhere, then the webhooks' `channel_vacated`.
    fn swept(&mut self, swept: crate::cluster::Swept) {
        for g in swept.members {
            self.member_removed(&g.channel, g.user_id, g.version, true);
        }
        if let (Some(ops), Some(_)) = (&self.presence_ops, &self.events) {
            for channel in swept.vacated {
                let _ = ops.send(Op::Emit(HubEvent::ChannelVacated { channel }));
            }
        }
    }

    /// Tells every node's subscribers of `channel` that `user_id` left
    /// (and, with `report`, the webhooks: from this node only).
    fn member_removed(&mut self, channel: &str, user_id: String, version: i64, report: bool) {
        let removed = protocol::frame(
            "pusher_internal:member_removed",
            Some(channel),
            &json!({"user_id": user_id}),
        );
        if report {
            self.emit(HubEvent::MemberRemoved {
                channel: channel.to_string(),
                user_id: user_id.clone(),
            });
        }
        let mark = MemberMark { user_id, version };
        self.announce_member(channel, removed.into(), None, mark);
    }

    fn presence_done(&mut self, done: Done) {
        match done {
            Done::Barrier(ack) => {
                let _ = ack.send(());
            }
            // The worker reported it to the webhooks already.
            Done::Left {
                channel,
                user_id,
                version,
            } => self.member_removed(&channel, user_id, version, false),
            Done::Joined {
                socket,
                channel,
                member,
                generation,
                outcome,
            } => self.presence_joined(socket, channel, member, generation, outcome),
        }
    }

    /// The worker's answer to a clustered join.
    fn presence_joined(
        &mut self,
        socket: SocketId,
        channel: String,
        member: shared_presence::Member,
        generation: u64,
        outcome: Result<Joined, String>,
    ) {
        let key = (socket.clone(), channel.clone());
        match self.pending_presence.get(&key) {
            Some(g) if *g == generation => {
                self.pending_presence.remove(&key);
            }
            // A later join of the same socket and channel takes this one's
            // row over.
            Some(_) => return,
            // Unsubscribed or gone meanwhile: undo. Others may have seen
            // the member in a list they got meanwhile, so the removal is
            // announced; the webhooks get the member's arrival first, so
            // their added/removed pairs stay whole.
            None => {
                if let (Ok(Joined::In { first, .. }), Some(ops)) = (&outcome, &self.presence_ops) {
                    if *first && self.events.is_some() {
                        let _ = ops.send(Op::Emit(HubEvent::MemberAdded {
                            channel: channel.clone(),
                            user_id: member.user_id.clone(),
                        }));
                    }
                    let _ = ops.send(Op::Leave {
                        socket,
                        channel,
                        announce: true,
                    });
                }
                return;
            }
        }
        let Some(out) = self.sockets.get(&socket).map(|s| s.out.clone()) else {
            return;
        };
        let (first, members, version) = match outcome {
            Ok(Joined::In {
                first,
                members,
                version,
            }) => (first, members, version),
            Ok(Joined::Full) => {
                return refuse_full(&out, channel);
            }
            Err(e) => {
                tracing::error!(error = %e, channel = %channel, socket_id = %socket, "joining a presence channel failed");
                let refusal = protocol::subscription_error(
                    &channel,
                    "ServerError",
                    "the presence channel could not be joined; try again",
                    4200,
                );
                let _ = out.try_send(Out::Refused(channel, refusal.into()));
                return;
            }
        };
        let presence = self.presence.entry(channel.clone()).or_default();
        // Joined as this very member already (a subscription made again):
        // it was announced then.
        let again = presence
            .by_socket
            .insert(socket.clone(), member.user_id.clone())
            .is_some_and(|before| before == member.user_id);
        let first = first && !again;
        if let Some(s) = self.sockets.get_mut(&socket) {
            s.channels.insert(channel.clone());
        }
        let here = here_of_members(&members);
        let _ = out.try_send(Out::Frame(
            protocol::subscription_succeeded(&channel, &here).into(),
        ));
        self.join_ephemeral(socket.clone(), channel.clone());
        if first {
            let added = protocol::frame(
                "pusher_internal:member_added",
                Some(&channel),
                &json!({"user_id": member.user_id, "user_info": member.user_info}),
            );
            let mark = MemberMark {
                user_id: member.user_id.clone(),
                version,
            };
            self.announce_member(&channel, added.into(), Some(&socket), mark);
            self.emit(HubEvent::MemberAdded {
                channel,
                user_id: member.user_id,
            });
        }
    }

    /// A clustered presence subscription: asked of the worker; answered
    /// in [`State::presence_joined`].
    fn subscribe_presence_clustered(&mut self, socket: SocketId, channel: String, member: Member) {
        let Some(s) = self.sockets.get(&socket) else {
            return;
        };
        let joined = s.channels.contains(&channel);
        let same_member = self
            .presence
            .get(&channel)
            .and_then(|p| p.by_socket.get(&socket))
            .is_some_and(|id| *id == member.user_id);
        // Another member on the same socket: a leave, then a join (the
        // worker runs them in this order). The same member again stays
        // subscribed: its row is updated and it gets the list again.
        if joined && !same_member {
            self.remove_sub(&socket, &channel);
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        self.pending_presence
            .insert((socket.clone(), channel.clone()), generation);
        if let Some(ops) = &self.presence_ops {
            let _ = ops.send(Op::Join {
                socket,
                channel,
                member: shared_presence::Member {
                    user_id: member.user_id,
                    user_info: member.user_info,
                },
                generation,
                max_members: self.config.max_presence_members,
            });
        }
    }

    /// This node's occupied channels.
    fn local_occupancy(&self, prefix: Option<&str>) -> Vec<Occupied> {
        let log = self.channels.iter().map(|(n, c)| (n, c.subs.len()));
        let eph = self.ephemeral.iter().map(|(n, s)| (n, s.len()));
        log.chain(eph)
            .filter(|(n, count)| *count > 0 && prefix.is_none_or(|p| n.starts_with(p)))
            .map(|(name, subscriptions)| Occupied {
                name: name.clone(),
                subscriptions,
                users: self.presence.get(name).map(|p| p.members.len()),
            })
            .collect()
    }

    fn drop_socket(&mut self, socket: &SocketId) {
        if !self.pending_presence.is_empty() {
            self.pending_presence.retain(|(s, _), _| s != socket);
        }
        if let Some(s) = self.sockets.remove(socket) {
            for channel in s.channels {
                self.remove_sub(socket, &channel);
            }
        }
    }

    fn publish(&mut self, channel: &str, frame: Utf8Bytes, except: Option<&str>) {
        let Some(subs) = self.ephemeral.get(channel) else {
            return;
        };
        let mut slow = Vec::new();
        let mut sent_to = 0u64;
        for socket in subs {
            if except == Some(&**socket) {
                continue;
            }
            if queue(&self.sockets, socket, &frame) {
                sent_to += 1;
            } else {
                slow.push(socket.clone());
            }
        }
        // Once per message, not per subscriber (the hot path).
        metrics::counter!("lockstep_hub_messages_out_total").increment(sent_to);
        for socket in slow {
            self.slow(&socket);
        }
    }

    fn remove_sub(&mut self, socket: &SocketId, channel: &str) {
        if let Some(subs) = self.ephemeral.get_mut(channel) {
            if !subs.remove(socket) {
                return;
            }
            // Decided now: telling the members below may close a slow one,
            // whose own removal then reports the channel vacated.
            let vacated = subs.is_empty();
            if vacated {
                self.ephemeral.remove(channel);
                self.presence_versions.remove(channel);
                metrics::gauge!("lockstep_hub_channels").decrement(1.0);
            }
            self.leave_presence(socket, channel);
            if vacated {
                self.emit(HubEvent::ChannelVacated {
                    channel: channel.to_string(),
                });
            }
            return;
        }
        let empty = match self.channels.get_mut(channel) {
            Some(c) => {
                if let Some(Sub::CatchingUp { task, .. }) = c.subs.remove(socket) {
                    task.abort();
                }
                c.subs.is_empty()
            }
            None => false,
        };
        if empty {
            self.channels.remove(channel);
            metrics::gauge!("lockstep_hub_channels").decrement(1.0);
            self.emit(HubEvent::ChannelVacated {
                channel: channel.to_string(),
            });
        }
    }

    /// A webhook event. Clustered, through the worker, in order with the
    /// presence changes; occupancy is decided there for the cluster.
    fn emit(&self, event: HubEvent) {
        let Some(events) = &self.events else {
            return;
        };
        match &self.presence_ops {
            Some(ops) => {
                let _ = ops.send(match event {
                    HubEvent::ChannelOccupied { channel } => Op::Occupy(channel),
                    HubEvent::ChannelVacated { channel } => Op::Vacate(channel),
                    other => Op::Emit(other),
                });
            }
            None => {
                let _ = events.send(event);
            }
        }
    }

    /// Adds `socket` to an ephemeral channel's followers.
    fn join_ephemeral(&mut self, socket: SocketId, channel: String) {
        let subs = self.ephemeral.entry(channel.clone()).or_default();
        let first = subs.is_empty();
        subs.insert(socket);
        if first {
            metrics::gauge!("lockstep_hub_channels").increment(1.0);
            self.emit(HubEvent::ChannelOccupied { channel });
        }
    }

    fn subscribe_presence(&mut self, socket: SocketId, channel: String, member: Member) {
        if self.presence_ops.is_some() {
            return self.subscribe_presence_clustered(socket, channel, member);
        }
        let Some(s) = self.sockets.get(&socket) else {
            return;
        };
        let out = s.out.clone();
        let joined = s.channels.contains(&channel);
        let same_member = self
            .presence
            .get(&channel)
            .and_then(|p| p.by_socket.get(&socket))
            .is_some_and(|id| *id == member.user_id);
        if joined && same_member {
            // The same member subscribing again: nobody comes or goes; it
            // gets the member list again (with its user_info updated).
            if let Some(p) = self.presence.get_mut(&channel) {
                if let Some(entry) = p.members.get_mut(&member.user_id) {
                    entry.0 = member.user_info;
                }
                let _ = out.try_send(Out::Frame(
                    protocol::subscription_succeeded(&channel, &here_of(p)).into(),
                ));
            }
            return;
        }
        // Another member on the same socket: a leave, then a join.
        if joined {
            self.remove_sub(&socket, &channel);
        }
        let presence = self.presence.entry(channel.clone()).or_default();
        if !presence.members.contains_key(&member.user_id)
            && presence.members.len() >= self.config.max_presence_members
        {
            if presence.members.is_empty() {
                self.presence.remove(&channel);
            }
            return refuse_full(&out, channel);
        }
        presence
            .by_socket
            .insert(socket.clone(), member.user_id.clone());
        let entry = presence
            .members
            .entry(member.user_id.clone())
            .or_insert_with(|| (member.user_info.clone(), 0));
        entry.0 = member.user_info.clone();
        entry.1 += 1;
        let first_of_user = entry.1 == 1;
        let here = here_of(presence);
        if let Some(s) = self.sockets.get_mut(&socket) {
            s.channels.insert(channel.clone());
        }
        let _ = out.try_send(Out::Frame(
            protocol::subscription_succeeded(&channel, &here).into(),
        ));
        self.join_ephemeral(socket.clone(), channel.clone());
        if first_of_user {
            // The others hear of a user's first connection only.
            let added = protocol::frame(
                "pusher_internal:member_added",
                Some(&channel),
                &json!({"user_id": member.user_id, "user_info": member.user_info}),
            );
            self.publish(&channel, added.into(), Some(&socket));
            self.emit(HubEvent::MemberAdded {
                channel,
                user_id: member.user_id,
            });
        }
    }

    /// `socket` left a presence channel: its user leaves with their last
    /// connection.
    fn leave_presence(&mut self, socket: &SocketId, channel: &str) {
        let Some(presence) = self.presence.get_mut(channel) else {
            return;
        };
        let Some(user_id) = presence.by_socket.remove(socket) else {
            return;
        };
        if let Some(ops) = &self.presence_ops {
            // Clustered: the worker decides whether that was the user's
            // last connection anywhere, and the answer announces it.
            if presence.by_socket.is_empty() {
                self.presence.remove(channel);
            }
            let _ = ops.send(Op::Leave {
                socket: socket.clone(),
                channel: channel.to_string(),
                announce: true,
            });
            return;
        }
        let gone = match presence.members.get_mut(&user_id) {
            Some((_, n)) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if gone {
            presence.members.remove(&user_id);
        }
        if presence.members.is_empty() {
            self.presence.remove(channel);
        }
        if gone {
            let removed = protocol::frame(
                "pusher_internal:member_removed",
                Some(channel),
                &json!({"user_id": user_id}),
            );
            // Reported before the others are told (telling them may close
            // a slow one, and with it the channel).
            self.emit(HubEvent::MemberRemoved {
                channel: channel.to_string(),
                user_id,
            });
            self.publish(channel, removed.into(), None);
        }
    }

    /// A client event: to every other subscriber, with the sender's
    /// `user_id` on a presence channel; never echoed to the sender.
    fn client_event(
        &mut self,
        socket: SocketId,
        channel: String,
        event: String,
        data: serde_json::Value,
    ) {
        let joined = self
            .ephemeral
            .get(&channel)
            .is_some_and(|subs| subs.contains(&socket));
        if !joined {
            crate::metrics::count_rejection("hub_client_event_not_subscribed");
            if let Some(s) = self.sockets.get(&socket) {
                let _ = s.out.try_send(Out::Frame(
                    protocol::error(
                        code::REJECTED,
                        "client events only on a channel this connection has joined",
                    )
                    .into(),
                ));
            }
            return;
        }
        let user_id = self
            .presence
            .get(&channel)
            .and_then(|p| p.by_socket.get(&socket).cloned());
        let frame = protocol::client_event(&event, &channel, &data, user_id.as_deref());
        metrics::counter!("lockstep_hub_client_events_total").increment(1);
        self.broadcast(&channel, frame.into(), Some(&socket));
        self.emit(HubEvent::ClientEvent {
            channel,
            event,
            data: match data {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            },
            socket_id: socket.to_string(),
            user_id,
        });
    }

    fn subscribe(&mut self, socket: SocketId, channel: Channel, resume: Option<i64>) {
        let name = channel.to_string();
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        s.channels.insert(name.clone());
        let out = s.out.clone();
        self.next_generation += 1;
        let generation = self.next_generation;
        if !self.channels.contains_key(&name) {
            self.emit(HubEvent::ChannelOccupied {
                channel: name.clone(),
            });
        }
        let entry = self.channels.entry(name.clone()).or_insert_with(|| {
            metrics::gauge!("lockstep_hub_channels").increment(1.0);
            LogChannel {
                channel: channel.clone(),
                subs: HashMap::new(),
                pushed: None,
                reading: false,
                stale: false,
            }
        });
        // Its own catch-up, off the registry: `subscription_succeeded`,
        // then the log after its seq (or nothing but the head), sent with
        // backpressure; live envelopes wait in its buffer meanwhile.
        let (db, tx) = (self.services.db.clone(), self.tx.clone());
        let (task_socket, task_name) = (socket.clone(), name.clone());
        let task = tokio::spawn(async move {
            let last = catch_up(&db, &channel, resume, &task_socket, &out).await;
            let _ = tx.send(Command::CaughtUp {
                socket: task_socket,
                channel: task_name,
                generation,
                last,
            });
        })
        .abort_handle();
        // Subscribing again replaces the subscription (and its catch-up).
        if let Some(Sub::CatchingUp { task, .. }) = entry.subs.insert(
            socket,
            Sub::CatchingUp {
                generation,
                buffer: Vec::new(),
                task,
            },
        ) {
            task.abort();
        }
    }

    fn caught_up(
        &mut self,
        socket: SocketId,
        name: String,
        generation: u64,
        last: Result<i64, String>,
    ) {
        let Some(c) = self.channels.get_mut(&name) else {
            return;
        };
        match c.subs.get(&socket) {
            Some(Sub::CatchingUp { generation: g, .. }) if *g == generation => {}
            // An earlier subscription of the same socket, replaced since.
            _ => return,
        }
        let Some(Sub::CatchingUp { buffer, .. }) = c.subs.remove(&socket) else {
            return;
        };
        let mut last = match last {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(error = %e, channel = %name, socket_id = %socket, "catching a subscriber up failed");
                return self.close(
                    &socket,
                    code::OVER_CAPACITY,
                    "the log could not be read; reconnect",
                );
            }
        };
        let Some(out) = self.sockets.get(&socket).map(|s| s.out.clone()) else {
            return;
        };
        // What arrived live meanwhile, in order, only while it follows on
        // (a later read sends the rest).
        let mut buffer = buffer;
        buffer.sort_by_key(|(seq, _)| *seq);
        let mut full = false;
        for (seq, frame) in buffer {
            if seq <= last {
                continue;
            }
            if seq != last + 1 {
                break;
            }
            if let Some(frame) = frame {
                if out.try_send(Out::Frame(frame)).is_err() {
                    full = true;
                    break;
                }
            }
            last = seq;
        }
        c.subs.insert(socket.clone(), Sub::Live { after: last });
        // The channel's live reads start from the lowest point any of its
        // subscribers needs (subscribers skip what they have had).
        c.pushed = Some(c.pushed.map_or(last, |p| p.min(last)));
        if full {
            return self.slow(&socket);
        }
        self.appended(&name);
    }

    /// An entry was appended to `name`: read from the last pushed seq.
    fn appended(&mut self, name: &str) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        let Some(after) = c.pushed else {
            // The first subscriber's read is under way; it reads again
            // when it lands.
            return;
        };
        if c.reading {
            c.stale = true;
            return;
        }
        c.reading = true;
        c.stale = false;
        let (db, tx, channel, name) = (
            self.services.db.clone(),
            self.tx.clone(),
            c.channel.clone(),
            name.to_string(),
        );
        tokio::spawn(async move {
            let read = channels::read(&db, &channel, after, READ_BATCH)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(Command::Read {
                channel: name,
                read,
            });
        });
    }

    fn read_done(&mut self, name: String, read: Result<channels::LogRead, String>) {
        let Some(c) = self.channels.get_mut(&name) else {
            return;
        };
        c.reading = false;
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, channel = %name, "reading the channel log failed; retrying in 1 s");
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let _ = tx.send(Command::Retry { channel: name });
                });
                return;
            }
        };
        let mut slow: HashSet<SocketId> = HashSet::new();
        let mut broken: HashSet<SocketId> = HashSet::new();
        let pushed = c.pushed.unwrap_or(0);
        let mut last = pushed;
        let mut sent_to = 0u64;
        if read.reset {
            // The log no longer reaches back to what was pushed: every
            // live subscriber is told, and follows from the head.
            let notice: Utf8Bytes = reset_notice(&name, read.seq).into();
            for (socket, sub) in c.subs.iter_mut() {
                if let Sub::Live { after } = sub {
                    if queue(&self.sockets, socket, &notice) {
                        *after = read.seq;
                    } else {
                        slow.insert(socket.clone());
                    }
                }
            }
            metrics::counter!("lockstep_hub_resume_resets_total").increment(1);
            last = read.seq;
        }
        for entry in read.entries.iter().filter(|e| e.envelope.seq > pushed) {
            let envelope = &entry.envelope;
            let frame: Utf8Bytes = encode(envelope, false).into();
            observe_commit_to_send(envelope);
            tracing::debug!(
                channel = %name,
                seq = envelope.seq,
                event = %envelope.event,
                correlation_id = %envelope.correlation_id,
                subscribers = c.subs.len(),
                "pushing a log envelope"
            );
            for (socket, sub) in c.subs.iter_mut() {
                if slow.contains(socket) || broken.contains(socket) {
                    continue;
                }
                match sub {
                    Sub::CatchingUp { buffer, .. } => {
                        if buffer.len() >= MAX_BUFFER {
                            slow.insert(socket.clone());
                        } else {
                            let spared = entry.except_socket.as_deref() == Some(&**socket);
                            buffer.push((envelope.seq, (!spared).then(|| frame.clone())));
                        }
                    }
                    // The request's own connection ("to others"): it
                    // moves on without it.
                    Sub::Live { after }
                        if envelope.seq == *after + 1
                            && entry.except_socket.as_deref() == Some(&**socket) =>
                    {
                        *after = envelope.seq;
                    }
                    Sub::Live { after } if envelope.seq == *after + 1 => {
                        if queue(&self.sockets, socket, &frame) {
                            *after = envelope.seq;
                            sent_to += 1;
                        } else {
                            slow.insert(socket.clone());
                        }
                    }
                    // Already had it.
                    Sub::Live { after } if envelope.seq <= *after => {}
                    // A gap for this subscriber (never expected): it
                    // reconnects and resumes rather than skip.
                    Sub::Live { .. } => {
                        broken.insert(socket.clone());
                    }
                }
            }
            last = envelope.seq;
        }
        c.pushed = Some(last);
        metrics::counter!("lockstep_hub_messages_out_total").increment(sent_to);
        let again = c.stale || read.entries.len() as i64 >= READ_BATCH;
        for socket in slow {
            self.slow(&socket);
        }
        for socket in broken {
            tracing::error!(socket_id = %socket, channel = %name, "a subscriber would have missed envelopes; closing it so it resumes");
            self.close(&socket, code::RECONNECT, "resume needed");
        }
        if again {
            self.appended(&name);
        }
    }

    /// A subscriber whose queue is full: disconnected (it resumes from its
    /// last seq when it comes back), never skipped.
    fn slow(&mut self, socket: &SocketId) {
        metrics::counter!("lockstep_hub_slow_disconnects_total").increment(1);
        tracing::warn!(socket_id = %socket, "a WebSocket client fell too far behind; disconnecting it");
        self.close(
            socket,
            code::OVER_CAPACITY,
            "too far behind; reconnect and resume",
        );
    }

    fn close(&mut self, socket: &SocketId, code: u16, reason: &'static str) {
        // Through its own signal: its queue may be full.
        if let Some(kill) = self.sockets.get_mut(socket).and_then(|s| s.kill.take()) {
            let _ = kill.send((code, reason));
        }
        self.drop_socket(socket);
    }
}

/// Queues `frame` to `socket` without waiting; false when its queue is
/// full (a socket already gone counts as served).
fn queue(sockets: &HashMap<SocketId, Socket>, socket: &SocketId, frame: &Utf8Bytes) -> bool {
    sockets
        .get(socket)
        .is_none_or(|s| s.out.try_send(Out::Frame(frame.clone())).is_ok())
}

/// A presence channel's `subscription_succeeded` data:
/// `{"presence": {"ids", "hash", "count"}}`.
fn here_of(presence: &Presence) -> serde_json::Value {
    let ids: Vec<&String> = presence.members.keys().collect();
    let hash: serde_json::Map<String, serde_json::Value> = presence
        .members
        .iter()
        .map(|(id, (info, _))| (id.clone(), info.clone()))
        .collect();
    json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}})
}

/// Refuses a presence subscription: the channel has its maximum of
/// distinct members.
fn refuse_full(out: &mpsc::Sender<Out>, channel: String) {
    crate::metrics::count_rejection("hub_presence_full");
    let refusal = protocol::subscription_error(
        &channel,
        "LimitReached",
        "this presence channel has its maximum of members",
        4100,
    );
    let _ = out.try_send(Out::Refused(channel, refusal.into()));
}

/// `subscription_succeeded`'s presence data from the cluster's list.
fn here_of_members(members: &[shared_presence::Member]) -> serde_json::Value {
    let ids: Vec<&String> = members.iter().map(|m| &m.user_id).collect();
    let hash: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .map(|m| (m.user_id.clone(), m.user_info.clone()))
        .collect();
    json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}})
}

/// A subscriber's catch-up: `subscription_succeeded`, then (resuming)
/// the log after `after` in batches, each frame sent with backpressure,
/// or a `lockstep:reset` when the log no longer reaches back. Returns the
/// last seq the subscriber has (the head when it did not resume).
async fn catch_up(
    db: &lockstep_core::db::Db,
    channel: &Channel,
    resume: Option<i64>,
    socket: &str,
    out: &mpsc::Sender<Out>,
) -> Result<i64, String> {
    let name = channel.to_string();
    let gone = |_| "the connection is gone".to_string();
    let Some(mut after) = resume else {
        // The head first, then the answer: nothing committed after the
        // client hears `subscription_succeeded` is missed.
        let head = channels::head(db, channel)
            .await
            .map_err(|e| e.to_string())?;
        out.send(Out::Frame(
            protocol::subscription_succeeded(&name, &json!({})).into(),
        ))
        .await
        .map_err(gone)?;
        return Ok(head);
    };
    out.send(Out::Frame(
        protocol::subscription_succeeded(&name, &json!({})).into(),
    ))
    .await
    .map_err(gone)?;
    let mut replayed = 0u64;
    loop {
        let read = channels::read(db, channel, after, READ_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if read.reset {
            metrics::counter!("lockstep_hub_resume_resets_total").increment(1);
            out.send(Out::Frame(reset_notice(&name, read.seq).into()))
                .await
                .map_err(gone)?;
            return Ok(read.seq);
        }
        let Some(last) = read.entries.last().map(|e| e.envelope.seq) else {
            break;
        };
        for entry in &read.entries {
            if entry.except_socket.as_deref() == Some(socket) {
                continue;
            }
            out.send(Out::Frame(encode(&entry.envelope, true).into()))
                .await
                .map_err(gone)?;
            replayed += 1;
        }
        after = last;
        if after >= read.seq {
            break;
        }
    }
    metrics::counter!("lockstep_hub_resume_replayed_total").increment(replayed);
    #[cfg(feature = "testing")]
    {
        let ms = CATCH_UP_DELAY_MS.load(std::sync::atomic::Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
    Ok(after)
}

/// How long after its event an envelope is queued to live subscribers
/// (the event's time is taken just before its commit).
fn observe_commit_to_send(envelope: &Envelope) {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(&envelope.occurred_at, &Rfc3339) {
        let secs = (time::OffsetDateTime::now_utc() - at).as_seconds_f64();
        metrics::histogram!("lockstep_hub_commit_to_send_seconds").record(secs.max(0.0));
    }
}

/// `lockstep:reset` on `channel`: the log no longer reaches back; refetch,
/// then follow from `seq`.
fn reset_notice(channel: &str, seq: i64) -> String {
    protocol::message(
        "lockstep:reset",
        channel,
        &json!({"channel": channel, "seq": seq}).to_string(),
    )
}

/// An envelope as a Pusher message: `event` its event, `data` the
/// envelope as a JSON string.
fn encode(envelope: &Envelope, replay: bool) -> String {
    let mut e = envelope.clone();
    e.meta.replay = replay;
    let data = serde_json::to_string(&e).unwrap_or_default();
    protocol::message(&e.event, &e.channel, &data)
}
