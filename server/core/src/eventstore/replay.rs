//! Replay: rebuild read models from the event stream, in chunks, without
//! touching the channel log, the outbox or timers (no reactor runs).

use crate::{
    error::CoreResult, eventstore::events, eventstore::projections::Projector, services::Services,
};

/// Events per transaction during a replay.
pub const CHUNK: i64 = 500;

/// Rebuilds `projectors` (all when empty; `locker_banks` brings
/// `open_requests` along, since both write the compartments table).
/// `progress(done, total)` is called after each chunk.
pub async fn replay(
    s: &Services,
    projectors: &[Projector],
    mut progress: impl FnMut(i64, i64),
) -> CoreResult<i64> {
    let mut selected: Vec<Projector> = if projectors.is_empty() {
        Projector::ALL.to_vec()
    } else {
        projectors.to_vec()
    };
    if selected.contains(&Projector::LockerBanks) && !selected.contains(&Projector::OpenRequests) {
        selected.push(Projector::OpenRequests);
    }
    // Apply in the canonical order: banks before the rows that point at them.
    selected.sort_by_key(|p| Projector::ALL.iter().position(|q| q == p));
    let mut tx = crate::eventstore::store::begin_write(&s.db).await?;
    let total = events::count(&mut tx).await?;
    for p in selected.iter().rev() {
        p.reset(&mut tx).await?;
    }
    let mut after = 0;
    let mut done = 0;
    loop {
        let chunk = events::read_all(&mut tx, after, CHUNK).await?;
        let Some(last) = chunk.last() else { break };
        after = last.position;
        for ev in &chunk {
            for p in &selected {
                p.apply(&mut tx, ev).await?;
            }
        }
        done += chunk.len() as i64;
        progress(done, total);
    }
    tx.commit().await?;
    Ok(done)
}
