//! A clustered hub's worker for what must be decided once across nodes,
//! run one after another in the order the registry asked: presence joins
//! and leaves (`lockstep_core::cluster::presence`) and, when webhooks are
//! configured, which nodes follow a channel (`cluster::occupancy`). It
//! also hands the webhook events on, in that same order, so a batch reads
//! `channel_occupied` before `member_added` and `member_removed` before
//! `channel_vacated` as on a single node.

use std::sync::Arc;

use lockstep_core::{
    cluster::{
        occupancy,
        presence::{self, Joined, Member},
    },
    db::Db,
    now_ms,
};
use tokio::sync::{mpsc, oneshot};

use super::events::HubEvent;

/// What the registry asks.
#[derive(Debug)]
pub enum Op {
    Join {
        socket: Arc<str>,
        channel: String,
        member: Member,
        generation: u64,
        max_members: usize,
    },
    /// `announce`: if that was the user's last connection, tell the
    /// others and the webhooks (false when undoing a join nobody heard of).
    Leave {
        socket: Arc<str>,
        channel: String,
        announce: bool,
    },
    /// This node's first socket on a channel (webhooks only).
    Occupy(String),
    /// This node's last socket left a channel (webhooks only).
    Vacate(String),
    /// A webhook event, after everything asked before it.
    Emit(HubEvent),
    /// Answered once every earlier op's answer is back at the registry.
    Barrier(oneshot::Sender<()>),
}

/// What the worker answers.
#[derive(Debug)]
pub enum Done {
    Joined {
        socket: Arc<str>,
        channel: String,
        member: Member,
        generation: u64,
        outcome: Result<Joined, String>,
    },
    /// The user whose last connection that was (already reported to the
    /// webhooks), to announce to the sockets, and the announcement's
    /// version.
    Left {
        channel: String,
        user_id: String,
        version: i64,
    },
    Barrier(oneshot::Sender<()>),
}

/// Starts the worker for `node_id`; `answer` hands each answer to the
/// registry; `events` takes the webhook events.
pub fn start(
    db: Db,
    node_id: Arc<str>,
    events: Option<mpsc::UnboundedSender<HubEvent>>,
    answer: impl Fn(Done) + Send + Sync + 'static,
) -> mpsc::UnboundedSender<Op> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let emit = |event: HubEvent| {
            if let Some(events) = &events {
                let _ = events.send(event);
            }
        };
        while let Some(op) = rx.recv().await {
            if let Some(done) = run(&db, &node_id, op, &emit).await {
                answer(done);
            }
        }
    });
    tx
}

async fn run(db: &Db, node_id: &str, op: Op, emit: &impl Fn(HubEvent)) -> Option<Done> {
    match op {
        Op::Join {
            socket,
            channel,
            member,
            generation,
            max_members,
        } => {
            let outcome = presence::join(
                db,
                node_id,
                &channel,
                &socket,
                &member,
                max_members,
                now_ms(),
            )
            .await
            .map_err(|e| e.to_string());
            Some(Done::Joined {
                socket,
                channel,
                member,
                generation,
                outcome,
            })
        }
        Op::Leave {
            socket,
            channel,
            announce,
        } => {
            // A failed delete leaves the row to the sweep of this node's
            // lease at exit (or of its death): logged, not retried here.
            let user_id = match presence::leave(db, &channel, &socket).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, channel = %channel, socket_id = %socket, "leaving a presence channel failed");
                    None
                }
            };
            let (user_id, version) = user_id.filter(|_| announce)?;
            emit(HubEvent::MemberRemoved {
                channel: channel.clone(),
                user_id: user_id.clone(),
            });
            Some(Done::Left {
                channel,
                user_id,
                version,
            })
        }
        Op::Occupy(channel) => {
            match occupancy::occupy(db, node_id, &channel).await {
                Ok(true) => emit(HubEvent::ChannelOccupied { channel }),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, channel = %channel, "recording a channel's occupancy failed")
                }
            }
            None
        }
        Op::Vacate(channel) => {
            match occupancy::vacate(db, node_id, &channel).await {
                Ok(true) => emit(HubEvent::ChannelVacated { channel }),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, channel = %channel, "recording a channel's vacancy failed")
                }
            }
            None
        }
        Op::Emit(event) => {
            emit(event);
            None
        }
        Op::Barrier(ack) => Some(Done::Barrier(ack)),
    }
}
