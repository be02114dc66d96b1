//! This node's lease (`cluster_nodes`), renewed every `every`, and the
//! sweep that follows each renewal: the presence rows of nodes whose lease
//! ran out are removed, and the users whose last connection that was are
//! handed to the hub to announce. A SIGKILLed node's members are thus gone
//! from every list within `lease + every`.

use std::time::Duration;

use lockstep_core::{
    cluster::{nodes, occupancy, presence},
    db::Db,
    now_ms,
};
use tokio::sync::{mpsc, watch};

use super::{Inbound, NodeInfo, Swept};

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

/// Renews (and, on a task of its own, sweeps) until `stop`, then gives
/// the lease up and sweeps this node's own members: those are returned,
/// for the hub to announce before the process exits. Renewal never waits
/// behind a long sweep.
pub async fn keep(
    db: Db,
    node: NodeInfo,
    timing: Timing,
    inbound: mpsc::UnboundedSender<Inbound>,
    mut stop: watch::Receiver<bool>,
) -> Swept {
    let sweeper = tokio::spawn(sweep_rounds(
        db.clone(),
        timing,
        inbound.clone(),
        stop.clone(),
    ));
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
            }
        }
    }
    // The sweeper finishes its round (what it removed is announced), then
    // this node's own rows go.
    let _ = sweeper.await;
    if let Err(e) = nodes::expire(&db, &node.node_id).await {
        tracing::warn!(error = %e, "giving up the node's lease failed; the others sweep it when it runs out");
        return Swept::default();
    }
    sweep(&db, now_ms()).await
}

/// Sweeps dead nodes every `timing.every` until `stop`; each round's
/// removals go to the hub.
async fn sweep_rounds(
    db: Db,
    timing: Timing,
    inbound: mpsc::UnboundedSender<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(timing.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        let swept = sweep(&db, now).await;
        if !swept.is_empty() {
            let _ = inbound.send(Inbound::Gone(swept));
        }
        if let Err(e) = nodes::forget_dead(&db, now - 60_000).await {
            tracing::warn!(error = %e, "forgetting dead nodes failed");
        }
    }
}

/// Removes what dead nodes left: presence members, then channel
/// occupancy (in that order, as the webhooks report them).
async fn sweep(db: &Db, now: i64) -> Swept {
    let mut swept = Swept::default();
    match presence::sweep(db, now).await {
        Ok(gone) => swept.members = gone,
        Err(e) => {
            tracing::warn!(error = %e, "sweeping dead nodes' members failed; next round retries")
        }
    }
    match occupancy::sweep(db, now).await {
        Ok(vacated) => swept.vacated = vacated,
        Err(e) => {
            tracing::warn!(error = %e, "sweeping dead nodes' channels failed; next round retries")
        }
    }
    if !swept.is_empty() {
        tracing::info!(
            members = swept.members.len(),
            vacated = swept.vacated.len(),
            "removed what nodes that are gone left behind"
        );
        metrics::counter!("lockstep_cluster_swept_members_total")
            .increment(swept.members.len() as u64);
    }
    swept
}
