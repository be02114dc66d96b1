//! A clustered hub's presence worker: the joins and leaves of presence
//! channels, run one after another in the order the registry asked,
//! against the cluster's member table (`lockstep_core::cluster::presence`).
//! Its answers go back to the registry, which tells the sockets.

use std::sync::Arc;

use lockstep_core::{
    cluster::presence::{self, Joined, Member},
    db::Db,
    now_ms,
};
use tokio::sync::{mpsc, oneshot};

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
    /// `announce`: tell the others if that was the user's last
    /// connection (false when undoing a join nobody heard of).
    Leave {
        socket: Arc<str>,
        channel: String,
        announce: bool,
    },
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
    /// `user_id`: the user whose last connection that was.
    Left {
        channel: String,
        user_id: Option<String>,
        announce: bool,
    },
    Barrier(oneshot::Sender<()>),
}

/// Starts the worker for `node_id`; `answer` hands each answer to the
/// registry.
pub fn start(
    db: Db,
    node_id: Arc<str>,
    answer: impl Fn(Done) + Send + Sync + 'static,
) -> mpsc::UnboundedSender<Op> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(op) = rx.recv().await {
            answer(run(&db, &node_id, op).await);
        }
    });
    tx
}

async fn run(db: &Db, node_id: &str, op: Op) -> Done {
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
            Done::Joined {
                socket,
                channel,
                member,
                generation,
                outcome,
            }
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
            Done::Left {
                channel,
                user_id,
                announce,
            }
        }
        Op::Barrier(ack) => Done::Barrier(ack),
    }
}
