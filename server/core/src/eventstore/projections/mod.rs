//! Projectors: keep the read models in step with the event stream, inside
//! the transaction that appends the events. Live, the event's side effects
//! are scheduled ([`side_effects`]: outbox rows, timers) and its channel-log
//! notification built ([`notifications`]); during replay only the read
//! models are rebuilt.
//!
//! One file per projector ([`locker_banks`], [`grants`], [`open_requests`],
//! [`accounts`]);
//! each matches every event explicitly, so a new event that no projector
//! considered is a compile error, not silence.

pub mod accounts;
pub mod grants;
pub mod locker_banks;
pub mod notifications;
pub mod open_requests;
pub mod side_effects;

use sqlx::AnyConnection;

use crate::{
    error::{CoreError, CoreResult},
    eventstore::{
        channels::Notification,
        events::{DomainEvent, StoredEvent},
    },
};

/// Live: read models + channel log + side effects. Replay: read models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live { open_timeout_ms: i64 },
    Replay,
}

/// A projector: a name, the tables it owns, and the events it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projector {
    LockerBanks,
    Grants,
    OpenRequests,
    Accounts,
}

impl Projector {
    pub const ALL: [Projector; 4] = [
        Projector::LockerBanks,
        Projector::Grants,
        Projector::OpenRequests,
        Projector::Accounts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Projector::LockerBanks => "locker_banks",
            Projector::Grants => "grants",
            Projector::OpenRequests => "open_requests",
            Projector::Accounts => "accounts",
        }
    }

    pub fn parse(name: &str) -> CoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "unknown projector {name:?}; known: locker_banks, grants, open_requests, accounts"
                ))
            })
    }

    /// Empties the projector's read model before a replay.
    pub async fn reset(self, conn: &mut AnyConnection) -> CoreResult<()> {
        let statements: &[&str] = match self {
            Projector::LockerBanks => &["DELETE FROM compartments", "DELETE FROM locker_banks"],
            Projector::Grants => &["DELETE FROM grants"],
            Projector::OpenRequests => &[
                "DELETE FROM open_requests",
                "UPDATE compartments SET latest_status = NULL, latest_command_id = NULL",
            ],
            // Accounts are created outside the stream; their edits replay
            // onto them.
            Projector::Accounts => &[],
        };
        for sql in statements {
            sqlx::query(sql).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Applies one event to this projector's read model.
    pub async fn apply(self, conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
        match self {
            Projector::LockerBanks => locker_banks::apply(conn, ev).await,
            Projector::Grants => grants::apply(conn, ev).await,
            Projector::OpenRequests => open_requests::apply(conn, ev).await,
            Projector::Accounts => accounts::apply(conn, ev).await,
        }
    }
}

/// What projecting one event live leaves for the end of its transaction.
#[derive(Debug, Default)]
pub struct Projected {
    /// The channel-log notification the event asks for (appended last, so
    /// the channel heads, hot rows on PostgreSQL, stay locked the shortest).
    pub note: Option<Notification>,
    /// A compartment's new latest open status (written once per batch,
    /// in compartment order: `open_requests::write_latest`).
    pub latest: Option<open_requests::LatestStatus>,
    /// The outbox job and timer it schedules, and the timer it ends
    /// (written once per batch, with the others').
    pub scheduled: side_effects::Scheduled,
}

/// [`project_live`] for the events of an open command's transition, its
/// row read before (`parties`): each event's row change is returned for
/// the batch to apply with its others (`open_requests::update_rows`), so
/// projecting costs no statement of its own. Every event must have a row
/// change (`RowUpdate::of`).
pub async fn project_transition(
    conn: &mut AnyConnection,
    events: &[StoredEvent],
    parties: open_requests::OpenParties,
    open_timeout_ms: i64,
) -> CoreResult<(Vec<Projected>, Vec<open_requests::RowUpdate>)> {
    let mut out = Vec::with_capacity(events.len());
    let mut changes = Vec::with_capacity(events.len());
    for ev in events {
        let change = open_requests::RowUpdate::of(ev).ok_or_else(|| {
            CoreError::Invalid(format!(
                "{} is not an open command's transition",
                ev.event.event_type()
            ))
        })?;
        let latest = change.latest(&parties);
        changes.push(change);
        for p in Projector::ALL {
            if p != Projector::OpenRequests {
                p.apply(conn, ev).await?;
            }
        }
        let scheduled = side_effects::schedule(ev, open_timeout_ms);
        let note = if ev.metadata.quiet {
            None
        } else {
            notifications::notification(conn, ev, Some(parties)).await?
        };
        out.push(Projected {
            note,
            latest,
            scheduled,
        });
    }
    Ok((out, changes))
}

/// Whether [`project_live`] writes nothing of `events` at once, leaving
/// every write to its caller's end (a batch's): each is a grant (its row
/// left in `grants`) or an open command's request, alone or with its
/// decision (its row left in `inserts`), and no projector but those two
/// writes for it ([`others_write_at_once`]). Then the projectors only
/// read, and a batch on PostgreSQL need not begin its transaction for
/// them (`Batch::stage`).
pub fn writes_only_deferred(events: &[StoredEvent]) -> bool {
    let mut i = 0;
    while i < events.len() {
        let ev = &events[i];
        if others_write_at_once(&ev.event) {
            return false;
        }
        if let Some(next) = events.get(i + 1) {
            if open_requests::decided_pair(ev, next) && !others_write_at_once(&next.event) {
                i += 2;
                continue;
            }
        }
        // `open_requests::apply_rows` defers a request's row and writes
        // an update at once.
        if open_requests::RowUpdate::of(ev).is_some() {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a projector other than `open_requests` writes for `event` at
/// once when it is projected live (a grant's new row is deferred, see
/// [`project_live`]). Every event is named, so a new one is a compile
/// error here until someone says; a wrong `false` would let a batch write
/// outside its transaction, so when in doubt, `true`.
fn others_write_at_once(event: &DomainEvent) -> bool {
    match event {
        DomainEvent::AccessGranted { .. }
        | DomainEvent::CompartmentOpenRequested { .. }
        | DomainEvent::CompartmentOpenAuthorized { .. }
        | DomainEvent::CompartmentOpenDenied { .. }
        | DomainEvent::CompartmentOpenSent { .. }
        | DomainEvent::CompartmentOpened { .. }
        | DomainEvent::CompartmentOpenFailed { .. }
        | DomainEvent::CompartmentOpenLateResult { .. } => false,
        DomainEvent::LockerBankRegistered { .. }
        | DomainEvent::LockerBankDetailsChanged { .. }
        | DomainEvent::CompartmentDetailsChanged { .. }
        | DomainEvent::UserProfileChanged { .. }
        | DomainEvent::CompartmentAdded { .. }
        | DomainEvent::CompartmentsImported { .. }
        | DomainEvent::DeviceStatusChanged { .. }
        | DomainEvent::CompartmentDoorChanged { .. }
        | DomainEvent::CompartmentOccupancyChanged { .. }
        | DomainEvent::LockerProvisioningRequested { .. }
        | DomainEvent::LockerProvisioningValidated { .. }
        | DomainEvent::LockerCredentialsCreated { .. }
        | DomainEvent::LockerCredentialsDelivered { .. }
        | DomainEvent::LockerWasProvisioned { .. }
        | DomainEvent::LockerProvisioningFailed { .. }
        | DomainEvent::LockerDecommissioned { .. }
        | DomainEvent::LockerProvisioningReset { .. }
        | DomainEvent::AccessWindowChanged { .. }
        | DomainEvent::AccessRevoked { .. } => true,
    }
}

/// Everything a live append does after the event rows: every projector
/// and each event's side effects (outbox, timers). During replay, the read
/// models only (the latest status written at once).
///
/// The `open_requests` projector takes the append's events together (a
/// request and its decision are one row write, see
/// `open_requests::apply_rows`) and leaves requests' rows in `inserts`,
/// for the caller to insert (a batch inserts its writes' together); the
/// projectors own disjoint tables, so running it first changes nothing
/// the others read.
pub async fn project_live(
    conn: &mut AnyConnection,
    events: &[StoredEvent],
    mode: Mode,
    inserts: &mut Vec<open_requests::NewRow>,
    grants: &mut Vec<grants::NewGrant>,
) -> CoreResult<Vec<Projected>> {
    let rows = open_requests::apply_rows(conn, events, inserts).await?;
    let mut out = Vec::with_capacity(events.len());
    for (ev, (parties, latest)) in events.iter().zip(rows) {
        for p in Projector::ALL {
            match p {
                Projector::OpenRequests => {}
                Projector::Grants => match grants::NewGrant::of(ev) {
                    Some(row) => grants.push(row),
                    None => {
                        // An edit of a grant finds the new ones first.
                        if grants::edits(ev) && !grants.is_empty() {
                            grants::insert_all(conn, &std::mem::take(grants)).await?;
                        }
                        p.apply(conn, ev).await?
                    }
                },
                _ => p.apply(conn, ev).await?,
            }
        }
        let Mode::Live { open_timeout_ms } = mode else {
            open_requests::write_latest(conn, latest.as_slice()).await?;
            out.push(Projected::default());
            continue;
        };
        let scheduled = side_effects::schedule(ev, open_timeout_ms);
        let note = if ev.metadata.quiet {
            None
        } else {
            notifications::notification(conn, ev, parties).await?
        };
        out.push(Projected {
            note,
            latest,
            scheduled,
        });
    }
    Ok(out)
}
