//! This node's lease (`cluster_nodes`), renewed every `every`, and the
//! sweep that follows each renewal: the presence rows of nodes whose lease
//! ran out are removed, and the users whose last connection that was are
//! handed to the hub to announce. A SIGKILLed node's members are thus gone
//! from every list within `lease + every`.

use std::time::Duration;

use lockstep_core::{
    cluster::{nodes, presence},
    db::Db,
    now_ms,
};
use tokio::sync::{mpsc, watch};

use super::{Inbound, NodeInfo};

/// The lease's timing.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often it is renewed (and dead nodes swept).
    pub every: Duration,
}

impl Timing {
    pub fn for_lease(lease: Duration) -> Self {
        Timing {
            lease,
            every: (lease / 5).clamp(Duration::from_millis(200), Duration::from_secs(2)),
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Writes the node's first lease.
pub async fn register(
    db: &Db,
    node: &NodeInfo,
    timing: Timing,
) -> lockstep_core::error::CoreResult<()> {
    let now = now_ms();
    nodes::register(
        db,
        &node.node_id,
        &node.name,
        node.mqtt_client_id.as_deref(),
        now,
        now + ms(timing.lease),
    )
    .await
}

/// Renews and sweeps until `stop`, then gives the lease up and sweeps this
/// node's own members: those are returned, for the hub to announce before
/// the process exits.
pub async fn keep(
    db: Db,
    node: NodeInfo,
    timing: Timing,
    inbound: mpsc::UnboundedSender<Inbound>,
    mut stop: watch::Receiver<bool>,
) -> Vec<presence::Gone> {
    let mut every = tokio::time::interval(timing.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let now = now_ms();
        match nodes::renew(&db, &node.node_id, now, now + ms(timing.lease)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(node = %node.name, "this node's lease had run out and its members were swept; every socket reconnects");
                metrics::counter!("lockstep_cluster_lease_lost_total").increment(1);
                if let Err(e) = register(&db, &node, timing).await {
                    tracing::error!(error = %e, "renewing the node's lease failed");
                }
                let _ = inbound.send(Inbound::LeaseLost);
            }
            Err(e) => {
                tracing::error!(error = %e, "renewing the node's lease failed; retrying");
                continue;
            }
        }
        if let Some(gone) = sweep(&db, now).await {
            let _ = inbound.send(Inbound::Gone(gone));
        }
        if let Err(e) = nodes::forget_dead(&db, now - 60_000).await {
            tracing::warn!(error = %e, "forgetting dead nodes failed");
        }
    }
    if let Err(e) = nodes::expire(&db, &node.node_id).await {
        tracing::warn!(error = %e, "giving up the node's lease failed; the others sweep it when it runs out");
        return Vec::new();
    }
    sweep(&db, now_ms()).await.unwrap_or_default()
}

/// Removes dead nodes' members; the users gone, if any.
async fn sweep(db: &Db, now: i64) -> Option<Vec<presence::Gone>> {
    match presence::sweep(db, now).await {
        Ok(gone) if gone.is_empty() => None,
        Ok(gone) => {
            tracing::info!(
                members = gone.len(),
                "removed the presence members of nodes that are gone"
            );
            metrics::counter!("lockstep_cluster_swept_members_total").increment(gone.len() as u64);
            Some(gone)
        }
        Err(e) => {
            tracing::warn!(error = %e, "sweeping dead nodes' members failed; next round retries");
            None
        }
    }
}
