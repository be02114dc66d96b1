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
};

use axum::extract::ws::Utf8Bytes;
use lockstep_core::{
    eventstore::channels::{self, Appended, Channel, Envelope},
    Services,
};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::protocol::{self, code};

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
    /// One HTTP API publish: the same bytes to every subscriber of
    /// `channel` but `except`.
    Publish {
        channel: String,
        frame: Utf8Bytes,
        except: Option<String>,
    },
    /// How many sockets follow each channel (with the prefix).
    Occupancy {
        prefix: Option<String>,
        reply: tokio::sync::oneshot::Sender<Vec<(String, usize)>>,
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
        read: Result<channels::Since, String>,
    },
}

/// The handle connections hold.
#[derive(Clone)]
pub struct Registry {
    tx: mpsc::UnboundedSender<Command>,
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
    /// Queues `frame` to every subscriber of `channel` but `except`.
    pub fn publish(&self, channel: String, frame: Utf8Bytes, except: Option<String>) {
        let _ = self.tx.send(Command::Publish {
            channel,
            frame,
            except,
        });
    }
    /// The occupied channels (whose names start with `prefix`) and how
    /// many sockets follow each.
    pub async fn occupancy(&self, prefix: Option<String>) -> Vec<(String, usize)> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command::Occupancy { prefix, reply });
        answer.await.unwrap_or_default()
    }
}

/// One subscriber of a log channel.
enum Sub {
    /// Its catch-up task (replay, or the head read) is under way: live
    /// envelopes wait here, at most `MAX_BUFFER`.
    CatchingUp {
        generation: u64,
        buffer: Vec<(i64, Utf8Bytes)>,
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
}

/// Starts the registry task; it runs until the process ends.
pub fn start(services: Services) -> Registry {
    let (tx, rx) = mpsc::unbounded_channel();
    let log = services.log_tail.subscribe();
    let state = State {
        services,
        tx: tx.clone(),
        sockets: HashMap::new(),
        channels: HashMap::new(),
        next_generation: 0,
        ephemeral: HashMap::new(),
    };
    tokio::spawn(run(state, rx, log));
    Registry { tx }
}

async fn run(
    mut st: State,
    mut rx: mpsc::UnboundedReceiver<Command>,
    mut log: broadcast::Receiver<Appended>,
) {
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(c) => st.handle(c),
                None => return,
            },
            appended = log.recv() => match appended {
                Ok(a) => st.appended(&a.channel),
                // Missed some: the log has them; read every channel.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("lockstep_hub_log_lagged_total").increment(n);
                    let names: Vec<String> = st.channels.keys().cloned().collect();
                    for name in names {
                        st.appended(&name);
                    }
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
                self.ephemeral.entry(channel).or_default().insert(socket);
            }
            Command::Publish {
                channel,
                frame,
                except,
            } => self.publish(&channel, frame, except.as_deref()),
            Command::Occupancy { prefix, reply } => {
                let log = self.channels.iter().map(|(n, c)| (n.clone(), c.subs.len()));
                let eph = self.ephemeral.iter().map(|(n, s)| (n.clone(), s.len()));
                let all = log
                    .chain(eph)
                    .filter(|(n, count)| {
                        *count > 0 && prefix.as_deref().is_none_or(|p| n.starts_with(p))
                    })
                    .collect();
                let _ = reply.send(all);
            }
            Command::CaughtUp {
                socket,
                channel,
                generation,
                last,
            } => self.caught_up(socket, channel, generation, last),
            Command::Read { channel, read } => self.read_done(channel, read),
        }
    }

    fn drop_socket(&mut self, socket: &SocketId) {
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
        for socket in subs {
            if except == Some(&**socket) {
                continue;
            }
            let sent = self
                .sockets
                .get(socket)
                .is_none_or(|s| s.out.try_send(Out::Frame(frame.clone())).is_ok());
            if sent {
                metrics::counter!("lockstep_hub_messages_out_total").increment(1);
            } else {
                slow.push(socket.clone());
            }
        }
        for socket in slow {
            self.slow(&socket);
        }
    }

    fn remove_sub(&mut self, socket: &SocketId, channel: &str) {
        if let Some(subs) = self.ephemeral.get_mut(channel) {
            subs.remove(socket);
            if subs.is_empty() {
                self.ephemeral.remove(channel);
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
        }
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
            let last = catch_up(&db, &channel, resume, &out).await;
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
            if out.try_send(Out::Frame(frame)).is_err() {
                full = true;
                break;
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
            let read = channels::since(&db, &channel, after, READ_BATCH)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(Command::Read {
                channel: name,
                read,
            });
        });
    }

    fn read_done(&mut self, name: String, read: Result<channels::Since, String>) {
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
        if read.reset {
            // The log no longer reaches back to what was pushed: every
            // live subscriber is told, and follows from the head.
            let notice: Utf8Bytes = reset_notice(&name, read.seq).into();
            for (socket, sub) in c.subs.iter_mut() {
                if let Sub::Live { after } = sub {
                    let sent = self
                        .sockets
                        .get(socket)
                        .is_none_or(|s| s.out.try_send(Out::Frame(notice.clone())).is_ok());
                    if sent {
                        *after = read.seq;
                    } else {
                        slow.insert(socket.clone());
                    }
                }
            }
            metrics::counter!("lockstep_hub_resume_resets_total").increment(1);
            last = read.seq;
        }
        for envelope in read.events.iter().filter(|e| e.seq > pushed) {
            let frame: Utf8Bytes = encode(envelope, false).into();
            for (socket, sub) in c.subs.iter_mut() {
                if slow.contains(socket) || broken.contains(socket) {
                    continue;
                }
                match sub {
                    Sub::CatchingUp { buffer, .. } => {
                        if buffer.len() >= MAX_BUFFER {
                            slow.insert(socket.clone());
                        } else {
                            buffer.push((envelope.seq, frame.clone()));
                        }
                    }
                    Sub::Live { after } if envelope.seq == *after + 1 => {
                        let sent = self
                            .sockets
                            .get(socket)
                            .is_none_or(|s| s.out.try_send(Out::Frame(frame.clone())).is_ok());
                        if sent {
                            *after = envelope.seq;
                            metrics::counter!("lockstep_hub_messages_out_total").increment(1);
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
        let again = c.stale || read.events.len() as i64 >= READ_BATCH;
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

/// A subscriber's catch-up: `subscription_succeeded`, then (resuming)
/// the log after `after` in batches, each frame sent with backpressure,
/// or a `lockstep:reset` when the log no longer reaches back. Returns the
/// last seq the subscriber has (the head when it did not resume).
async fn catch_up(
    db: &lockstep_core::db::Db,
    channel: &Channel,
    resume: Option<i64>,
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
        let read = channels::since(db, channel, after, READ_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if read.reset {
            metrics::counter!("lockstep_hub_resume_resets_total").increment(1);
            out.send(Out::Frame(reset_notice(&name, read.seq).into()))
                .await
                .map_err(gone)?;
            return Ok(read.seq);
        }
        let Some(last) = read.events.last().map(|e| e.seq) else {
            break;
        };
        for envelope in &read.events {
            out.send(Out::Frame(encode(envelope, true).into()))
                .await
                .map_err(gone)?;
        }
        replayed += read.events.len() as u64;
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
