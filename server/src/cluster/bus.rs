//! NATS between the nodes (core subjects, no JetStream). What travels here
//! is either a hint or ephemeral by nature:
//!
//! - `{prefix}.log`: which channels got appended to, and up to which seq.
//!   A hint only: every hub reads the log itself from its last seq, again
//!   after any reconnect and every few seconds, so a lost wake-up costs
//!   latency, never an envelope.
//! - `{prefix}.frame`: a Pusher frame for one channel's local subscribers
//!   on every node, but the socket it spares (HTTP API publishes, client
//!   events, `member_added` / `member_removed`).
//! - `{prefix}.occupancy`: "which channels do your sockets follow?",
//!   answered by every node to the asker's inbox (the HTTP API's channel
//!   queries).
//!
//! The connection does not hear its own messages (`no_echo`): the sender
//! delivers to its own sockets itself.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use lockstep_core::eventstore::channels::Appended;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::Inbound;

/// Messages waiting to be handed to the NATS client.
const OUT_QUEUE: usize = 10_000;

/// A frame for one channel's subscribers on every node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FrameMsg {
    pub channel: String,
    pub frame: String,
    /// The socket that must not get it (`socket_id` exclusion).
    #[serde(default)]
    pub except: Option<String>,
    /// A `member_added`/`member_removed`: whose, and its place in the
    /// channel's order (a receiver drops one older than what it applied
    /// for that user).
    #[serde(default)]
    pub member: Option<MemberMark>,
}

/// The user and version of a presence announcement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemberMark {
    pub user_id: String,
    pub version: i64,
}

/// One channel some node's sockets follow.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OccupiedMsg {
    pub name: String,
    pub subscriptions: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct OccupancyAsk {
    #[serde(default)]
    prefix: Option<String>,
}

/// The node's NATS connection.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    subjects: Arc<Subjects>,
    /// Publishes, in order, through one task; bounded, so a NATS outage
    /// costs dropped frames (counted), never the node's memory.
    out: mpsc::Sender<Outgoing>,
}

enum Outgoing {
    Publish(String, Bytes),
    /// Answered once everything queued before it reached the server.
    Flush(tokio::sync::oneshot::Sender<()>),
}

struct Subjects {
    log: String,
    frame: String,
    occupancy: String,
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach NATS at {url}: {reason}")]
pub struct BusError {
    url: String,
    reason: String,
}

/// The subject prefix for one Pusher app: `lockstep.{app_id}` with
/// anything but letters, digits, `-` and `_` replaced.
pub fn prefix_for(app_id: &str) -> String {
    let clean: String = app_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("lockstep.{clean}")
}

impl Bus {
    /// Connects (giving up after `timeout`), subscribes, and starts the
    /// tasks that feed `inbound` and forward `log_tail`'s wake-ups.
    pub async fn connect(
        url: &str,
        prefix: &str,
        name: &str,
        timeout: Duration,
        inbound: mpsc::UnboundedSender<Inbound>,
        log_tail: broadcast::Receiver<Appended>,
    ) -> Result<Bus, BusError> {
        let fail = |reason: String| BusError {
            url: redact(url),
            reason,
        };
        let on_event = inbound.clone();
        let options = async_nats::ConnectOptions::new()
            .name(name)
            .no_echo()
            .connection_timeout(timeout)
            .event_callback(move |event| {
                let inbound = on_event.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("NATS connected; reading every followed channel");
                            metrics::counter!("lockstep_cluster_bus_connects_total").increment(1);
                            let _ = inbound.send(Inbound::WakeAll);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(
                                "NATS disconnected; reconnecting (wake-ups wait, the log does not)"
                            );
                        }
                        other => tracing::warn!(event = %other, "NATS"),
                    }
                }
            });
        let client = tokio::time::timeout(timeout, options.connect(url))
            .await
            .map_err(|_| fail(format!("no answer within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let subjects = Arc::new(Subjects {
            log: format!("{prefix}.log"),
            frame: format!("{prefix}.frame"),
            occupancy: format!("{prefix}.occupancy"),
        });
        for (subject, kind) in [
            (subjects.log.clone(), Kind::Log),
            (subjects.frame.clone(), Kind::Frame),
            (subjects.occupancy.clone(), Kind::Occupancy),
        ] {
            let sub = client
                .subscribe(subject)
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::spawn(receive(sub, kind, inbound.clone()));
        }
        let (out, queued) = mpsc::channel(OUT_QUEUE);
        tokio::spawn(send(client.clone(), queued));
        let bus = Bus {
            client,
            subjects,
            out,
        };
        tokio::spawn(forward_log(bus.clone(), log_tail));
        Ok(bus)
    }

    fn send(&self, subject: String, payload: Vec<u8>) {
        if self
            .out
            .try_send(Outgoing::Publish(subject, Bytes::from(payload)))
            .is_err()
        {
            metrics::counter!("lockstep_cluster_publish_dropped_total").increment(1);
        }
    }

    /// Waits until what was queued so far reached the NATS server (at a
    /// clean exit: the last `member_removed` must leave before we do).
    pub async fn flush(&self, timeout: Duration) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        let _ = tokio::time::timeout(timeout, async {
            if self.out.send(Outgoing::Flush(done)).await.is_ok() {
                let _ = flushed.await;
            }
        })
        .await;
    }

    /// Tells the other nodes' subscribers of `frame.channel`.
    pub fn frame(&self, frame: &FrameMsg) {
        if let Ok(payload) = serde_json::to_vec(frame) {
            metrics::counter!("lockstep_cluster_frames_out_total").increment(1);
            self.send(self.subjects.frame.clone(), payload);
        }
    }

    /// Answers an occupancy question.
    pub fn reply(&self, subject: String, occupied: &[OccupiedMsg]) {
        if let Ok(payload) = serde_json::to_vec(occupied) {
            self.send(subject, payload);
        }
    }

    /// Asks every other node which channels its sockets follow; waits for
    /// `expect` answers at most `timeout`.
    pub async fn occupancy(
        &self,
        prefix: Option<String>,
        expect: usize,
        timeout: Duration,
    ) -> Vec<OccupiedMsg> {
        if expect == 0 {
            return Vec::new();
        }
        let inbox = self.client.new_inbox();
        let Ok(mut answers) = self.client.subscribe(inbox.clone()).await else {
            return Vec::new();
        };
        let ask = serde_json::to_vec(&OccupancyAsk { prefix }).unwrap_or_default();
        if self
            .client
            .publish_with_reply(self.subjects.occupancy.clone(), inbox, ask.into())
            .await
            .is_err()
        {
            return Vec::new();
        }
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..expect {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(m)) => match serde_json::from_slice::<Vec<OccupiedMsg>>(&m.payload) {
                    Ok(list) => all.extend(list),
                    Err(e) => reject("occupancy_answer", &e.to_string()),
                },
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        expect,
                        "not every node answered the occupancy question in time"
                    );
                    metrics::counter!("lockstep_cluster_occupancy_timeouts_total").increment(1);
                    break;
                }
            }
        }
        all
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Log,
    Frame,
    Occupancy,
}

async fn receive(
    mut sub: async_nats::Subscriber,
    kind: Kind,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    while let Some(m) = sub.next().await {
        let parsed = match kind {
            Kind::Log => serde_json::from_slice::<Vec<(String, i64)>>(&m.payload)
                .map(|w| Inbound::Wake(w.into_iter().map(|(c, _)| c).collect())),
            Kind::Frame => serde_json::from_slice::<FrameMsg>(&m.payload).map(Inbound::Frame),
            Kind::Occupancy => {
                let Some(reply) = m.reply.clone() else {
                    reject("occupancy_without_reply", "no reply subject");
                    continue;
                };
                serde_json::from_slice::<OccupancyAsk>(&m.payload).map(|a| Inbound::Occupancy {
                    prefix: a.prefix,
                    reply: reply.to_string(),
                })
            }
        };
        match parsed {
            Ok(msg) => {
                if inbound.send(msg).is_err() {
                    return;
                }
            }
            Err(e) => reject(&m.subject, &e.to_string()),
        }
    }
}

/// A message from NATS that is not ours to read: logged and counted,
/// never fatal.
fn reject(what: &str, reason: &str) {
    tracing::warn!(what, reason, "refused a malformed message between nodes");
    crate::metrics::count_rejection("cluster_bad_message");
}

async fn send(client: async_nats::Client, mut queued: mpsc::Receiver<Outgoing>) {
    while let Some(next) = queued.recv().await {
        match next {
            Outgoing::Publish(subject, payload) => {
                if let Err(e) = client.publish(subject, payload).await {
                    tracing::warn!(error = %e, "publishing to NATS failed");
                    metrics::counter!("lockstep_cluster_publish_errors_total").increment(1);
                }
            }
            Outgoing::Flush(done) => {
                let _ = client.flush().await;
                let _ = done.send(());
            }
        }
    }
}

/// Every local append, batched, to the other nodes.
async fn forward_log(bus: Bus, mut log: broadcast::Receiver<Appended>) {
    loop {
        let first = match log.recv().await {
            Ok(a) => a,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // The others' periodic read covers what was skipped.
                metrics::counter!("lockstep_cluster_wakeups_lagged_total").increment(n);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let mut batch = vec![(first.channel, first.seq)];
        while batch.len() < 500 {
            match log.try_recv() {
                Ok(a) => batch.push((a.channel, a.seq)),
                Err(_) => break,
            }
        }
        if let Ok(payload) = serde_json::to_vec(&batch) {
            metrics::counter!("lockstep_cluster_wakeups_out_total").increment(batch.len() as u64);
            bus.send(bus.subjects.log.clone(), payload);
        }
    }
}

/// `nats://user:pass@host` without the password.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((creds, host)) => match creds.rsplit_once(':') {
            Some((user, _)) if !user.ends_with('/') => format!("{user}:***@{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_safe_subjects() {
        assert_eq!(prefix_for("lockstep"), "lockstep.lockstep");
        assert_eq!(prefix_for("my app.1 >*"), "lockstep.my_app_1___");
    }

    #[test]
    fn passwords_do_not_print() {
        assert_eq!(redact("nats://u:secret@h:4222"), "nats://u:***@h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
    }
}
