//! The compartment open flow, one `command_id` for every phase:
//! requested → accepted (authorized) | denied → sent → opened | failed.
//! An admin override is the same command with `override = true` and a
//! reason. A locker result after the command ended is recorded as its own
//! event and does not change the status.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

pub use lockstep_wire::{DenialReason, FailureReason, OpenStatus};

use crate::{
    error::{parse_wire, parse_wire_opt, CoreError, CoreResult},
    eventstore::batch::{Batch, Reads},
    eventstore::events::{DomainEvent, Metadata},
    eventstore::store::{self, Staged},
    eventstore::timers,
    identity::accounts::parse_uuid,
    identity::caller::Caller,
    services::Services,
};

const AGGREGATE: &str = "open_request";

#[derive(Clone, Debug, Default)]
pub struct OpenCommandInput {
    pub compartment_id: Uuid,
    pub override_: bool,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The immediate answer to an open request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDecision {
    pub command_id: Uuid,
    /// `accepted` or `denied`.
    pub status: OpenStatus,
    pub reason: Option<DenialReason>,
}

impl OpenDecision {
    pub fn accepted(&self) -> bool {
        self.status == OpenStatus::Accepted
    }
}

/// The read model of one command.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequestView {
    pub command_id: Uuid,
    pub tenant_id: Uuid,
    pub compartment_id: Uuid,
    pub locker_bank_id: Uuid,
    pub user_id: Uuid,
    pub actor_id: Uuid,
    #[serde(rename = "override")]
    pub override_: bool,
    pub override_reason: Option<String>,
    pub status: OpenStatus,
    pub denial_reason: Option<DenialReason>,
    pub failure_reason: Option<FailureReason>,
    /// What the locker (or the send) said, at most 500 characters.
    pub failure_detail: Option<String>,
    pub late_result: Option<String>,
    pub requested_at: i64,
    pub authorized_at: Option<i64>,
    pub denied_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub opened_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub late_result_at: Option<i64>,
}

async fn decision_of(
    conn: &mut AnyConnection,
    command_id: Uuid,
) -> CoreResult<Option<OpenDecision>> {
    let row = sqlx::query("SELECT status, denial_reason FROM open_requests WHERE command_id = $1")
        .bind(command_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| -> CoreResult<OpenDecision> {
        let status: OpenStatus = parse_wire(&r.try_get::<String, _>("status")?)?;
        Ok(OpenDecision {
            command_id,
            status: if status == OpenStatus::Denied {
                OpenStatus::Denied
            } else {
                OpenStatus::Accepted
            },
            reason: parse_wire_opt(r.try_get("denial_reason")?)?,
        })
    })
    .transpose()
}

async fn idempotent_command(
    conn: &mut AnyConnection,
    user_id: Uuid,
    key: &str,
) -> CoreResult<Option<Uuid>> {
    sqlx::query("SELECT command_id FROM idempotency_keys WHERE user_id = $1 AND key = $2")
        .bind(user_id.to_string())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| parse_uuid(&r.try_get::<String, _>("command_id")?))
        .transpose()
}

/// Counts the commands that just ended, by final status and reason
/// (`lockstep_open_commands_total`; denials are counted where decided).
fn count_final(events: &[DomainEvent]) {
    for e in events {
        let (status, reason) = match e {
            DomainEvent::CompartmentOpened { .. } => ("opened", "-"),
            DomainEvent::CompartmentOpenFailed { reason, .. } => ("failed", reason.as_str()),
            _ => continue,
        };
        metrics::counter!("lockstep_open_commands_total", "status" => status, "reason" => reason)
            .increment(1);
    }
}

/// Whether `existing` was asked with the same compartment, override and
/// (override) reason as `input`.
async fn same_request(
    conn: &mut AnyConnection,
    existing: Uuid,
    input: &OpenCommandInput,
    reason: Option<&str>,
) -> CoreResult<bool> {
    let Some(row) = sqlx::query(
        "SELECT compartment_id, override, override_reason FROM open_requests WHERE command_id = $1",
    )
    .bind(existing.to_string())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(false);
    };
    let compartment = parse_uuid(&row.try_get::<String, _>("compartment_id")?)?;
    let override_ = row.try_get::<i64, _>("override")? != 0;
    let stored_reason: Option<String> = row.try_get("override_reason")?;
    Ok(compartment == input.compartment_id
        && override_ == input.override_
        && stored_reason.as_deref() == reason)
}

/// Decides and records an open request. Returns at once: `accepted` (the
/// send reactor and the timeout are scheduled) or `denied` with a reason.
pub async fn request_open(
    s: &Services,
    caller: &Caller,
    input: OpenCommandInput,
    now: i64,
) -> CoreResult<OpenDecision> {
    if let Some(key) = &input.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(CoreError::Invalid(
                "Idempotency-Key must have 1 to 200 characters".into(),
            ));
        }
    }
    // A reason means something only for an override: otherwise it is
    // neither checked nor kept.
    let reason = if input.override_ {
        crate::text::check_optional_text(
            "reason",
            input.reason.as_deref(),
            crate::text::REASON_MAX,
        )?
    } else {
        None
    };
    if input.override_ {
        if !caller.is_admin() {
            return Err(CoreError::Forbidden("only admins may override".into()));
        }
        if reason.is_none() {
            return Err(CoreError::Invalid("an override needs a reason".into()));
        }
    }
    let user_id = caller.user.id;
    let tenant_id = caller.user.tenant_id;
    let mode = s.mode();
    for _ in 0..store::MAX_RETRIES {
        let (input, reason, meta) = (input.clone(), reason.clone(), caller.metadata());
        let key = input.compartment_id;
        let written = s
            .writes
            .write_reading(key, Reads::Compartment(key), move |conn| {
                let (input, reason, meta) = (input.clone(), reason.clone(), meta.clone());
                Box::pin(async move {
                    let asked = Asked {
                        user_id,
                        tenant_id,
                        input: &input,
                        reason,
                        meta,
                        now,
                    };
                    decide_open(conn, mode, asked).await
                })
            })
            .await;
        let ((decision, recorded), written) = match written {
            Ok(w) => w,
            // A concurrent request with the same key won (another node):
            // ask again, and its command answers.
            Err(CoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        };
        s.published(&written);
        if let Some(compartment_id) = recorded {
            if let Some(reason) = decision.reason {
                metrics::counter!("lockstep_open_commands_total", "status" => "denied", "reason" => reason.as_str())
                    .increment(1);
            }
            tracing::info!(command_id = %decision.command_id, %compartment_id, denied = ?decision.reason, "open requested");
        }
        return Ok(decision);
    }
    Err(CoreError::Conflict(
        "the request collided with another; retry".into(),
    ))
}

/// An open request as [`decide_open`] takes it.
struct Asked<'a> {
    user_id: Uuid,
    tenant_id: Uuid,
    input: &'a OpenCommandInput,
    reason: Option<String>,
    meta: Metadata,
    now: i64,
}

/// Decides and records an open request inside a group-committed write:
/// the decision, and the compartment when it was recorded now (`None`:
/// an earlier request with the same idempotency key answers).
async fn decide_open(
    conn: &mut Batch,
    mode: crate::eventstore::projections::Mode,
    asked: Asked<'_>,
) -> CoreResult<((OpenDecision, Option<Uuid>), Staged)> {
    let Asked {
        user_id,
        tenant_id,
        input,
        reason,
        mut meta,
        now,
    } = asked;
    if let Some(key) = &input.idempotency_key {
        if let Some(existing) = idempotent_command(conn.reader().await?, user_id, key).await? {
            // Its row as this batch left it.
            conn.settle(existing).await?;
            // The same key answers the same request only: another
            // compartment, override or reason is a different request.
            if !same_request(conn.reader().await?, existing, input, reason.as_deref()).await? {
                return Err(CoreError::IdempotencyKeyReused);
            }
            let decision = decision_of(conn.reader().await?, existing)
                .await?
                .ok_or(CoreError::NotFound)?;
            return Ok(((decision, None), Staged::default()));
        }
    }
    let c = conn
        .compartment(input.compartment_id)
        .await?
        .filter(|c| c.tenant_id == tenant_id)
        .ok_or(CoreError::NotFound)?;
    let denial = if c.bank_state == "decommissioned" {
        Some(DenialReason::LockerDecommissioned)
    } else if c.bank_online == Some(false) {
        Some(DenialReason::LockerOffline)
    } else if input.override_ {
        None
    } else {
        access_denial(conn.reader().await?, user_id, c.id, now).await?
    };
    let command_id = Uuid::now_v7();
    let requested = DomainEvent::CompartmentOpenRequested {
        command_id,
        compartment_id: c.id,
        bank_id: c.bank_id,
        tenant_id: c.tenant_id,
        user_id,
        override_: input.override_,
        reason,
    };
    let outcome = match denial {
        None => DomainEvent::CompartmentOpenAuthorized { command_id },
        Some(reason) => DomainEvent::CompartmentOpenDenied { command_id, reason },
    };
    meta.correlation_id = command_id;
    let staged = conn
        .stage(
            mode,
            AGGREGATE,
            command_id,
            0,
            vec![requested, outcome],
            &meta,
            now,
            None,
        )
        .await?;
    if let Some(key) = &input.idempotency_key {
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, command_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id.to_string())
        .bind(key)
        .bind(command_id.to_string())
        .bind(now)
        .execute(conn.writer().await?)
        .await;
        if let Err(e) = stored {
            if CoreError::is_unique_violation(&e) {
                return Err(CoreError::VersionConflict {
                    aggregate: command_id,
                    expected: 0,
                });
            }
            return Err(e.into());
        }
    }
    let decision = OpenDecision {
        command_id,
        status: if denial.is_some() {
            OpenStatus::Denied
        } else {
            OpenStatus::Accepted
        },
        reason: denial,
    };
    Ok(((decision, Some(c.id)), staged))
}

/// Why `user_id` may not open `compartment_id` now, if they may not.
async fn access_denial(
    conn: &mut AnyConnection,
    user_id: Uuid,
    compartment_id: Uuid,
    now: i64,
) -> CoreResult<Option<DenialReason>> {
    let rows = sqlx::query(
        "SELECT valid_from, valid_until FROM grants WHERE user_id = $1 AND compartment_id = $2 AND revoked_at IS NULL",
    )
    .bind(user_id.to_string())
    .bind(compartment_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Some(DenialReason::NoAccess));
    }
    let mut not_yet = false;
    for r in &rows {
        let from: Option<i64> = r.try_get("valid_from")?;
        let until: Option<i64> = r.try_get("valid_until")?;
        let started = from.is_none_or(|f| f <= now);
        let ended = until.is_some_and(|u| u <= now);
        if started && !ended {
            return Ok(None);
        }
        not_yet |= !started;
    }
    Ok(Some(if not_yet {
        DenialReason::AccessNotYetValid
    } else {
        DenialReason::AccessExpired
    }))
}

/// What `decide` is given: the command's status, failure reason and late
/// result.
type Decide = dyn Fn(OpenStatus, Option<FailureReason>, Option<&str>) -> Option<Vec<DomainEvent>>
    + Send
    + Sync;

/// What a transition saw and did.
struct Transitioned {
    /// The status `decide` saw.
    status: OpenStatus,
    /// The events appended, if any.
    events: Option<Vec<DomainEvent>>,
    /// The bank the command was sent to.
    bank: Uuid,
    /// When it was sent, if it was.
    sent_at: Option<i64>,
}

/// Runs `decide` on the command's current status in a group-committed
/// write and appends what it returns (and, given `outbox_job`, marks that
/// outbox row done in the same write). Given `from_bank`, a command of
/// another bank is left alone (`decide` is not asked).
async fn transition(
    s: &Services,
    command_id: Uuid,
    now: i64,
    outbox_job: Option<i64>,
    from_bank: Option<Uuid>,
    decide: Arc<Decide>,
) -> CoreResult<Transitioned> {
    let mode = s.mode();
    for _ in 0..store::MAX_RETRIES {
        let decide = decide.clone();
        let written = s
            .writes
            .write_reading(command_id, Reads::Command(command_id), move |conn| {
                let decide = decide.clone();
                Box::pin(async move {
                    if let Some(id) = outbox_job {
                        conn.complete_outbox(id, now);
                    }
                    let Some(now_state) = conn.command_row(command_id).await? else {
                        return Err(CoreError::NotFound);
                    };
                    let status = now_state.status;
                    let seen = Transitioned {
                        status,
                        events: None,
                        bank: now_state.parties.bank,
                        sent_at: now_state.sent_at,
                    };
                    if from_bank.is_some_and(|b| b != now_state.parties.bank) {
                        return Ok((seen, Staged::default()));
                    }
                    let Some(events) =
                        decide(status, now_state.failure, now_state.late_result.as_deref())
                    else {
                        return Ok((seen, Staged::default()));
                    };
                    let meta = Metadata::system(now_state.parties.tenant, command_id);
                    let staged = conn
                        .stage(
                            mode,
                            AGGREGATE,
                            command_id,
                            now_state.version,
                            events.clone(),
                            &meta,
                            now,
                            Some(now_state.parties),
                        )
                        .await?;
                    let done = Transitioned {
                        events: Some(events),
                        ..seen
                    };
                    Ok((done, staged))
                })
            })
            .await;
        match written {
            Ok((done, written)) => {
                s.published(&written);
                if let Some(events) = &done.events {
                    count_final(events);
                }
                return Ok(done);
            }
            Err(CoreError::VersionConflict { .. }) => {
                // Another node wrote this command meanwhile: decide again
                // on the new state, after a random few milliseconds.
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=8u64);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(CoreError::Conflict(format!(
        "command {command_id} kept changing; gave up"
    )))
}

/// The broker acknowledged the command (QoS 1 PUBACK): `sent`.
pub async fn record_sent(s: &Services, command_id: Uuid, now: i64) -> CoreResult<bool> {
    record_sent_for(s, command_id, now, None).await
}

/// [`record_sent`], marking the send's outbox row done in the same write.
pub async fn record_sent_for(
    s: &Services,
    command_id: Uuid,
    now: i64,
    outbox_job: Option<i64>,
) -> CoreResult<bool> {
    let decide = move |status, _: Option<FailureReason>, _: Option<&str>| {
        (status == OpenStatus::Accepted)
            .then(|| vec![DomainEvent::CompartmentOpenSent { command_id }])
    };
    Ok(
        transition(s, command_id, now, outbox_job, None, Arc::new(decide))
            .await?
            .events
            .is_some(),
    )
}

/// What a locker result did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultOutcome {
    /// The status moved to `opened` or `failed`.
    Applied,
    /// The same result again: nothing changed.
    Duplicate,
    /// A result for a command that was never sent (denied): refused.
    NotSent,
    /// The command had already ended (e.g. timed out): recorded, status kept.
    Late,
    /// The command was sent to another bank than the one answering:
    /// refused, nothing recorded.
    WrongLocker,
}

/// What recording a locker's answer did, and for an applied one the
/// command's round trip (`sent` to the answer, in milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub outcome: ResultOutcome,
    pub round_trip_ms: Option<i64>,
}

/// A locker's answer: `opened`, or `failed` with `device_error`.
/// `NotFound` when no such command exists.
pub async fn record_result(
    s: &Services,
    command_id: Uuid,
    success: bool,
    error: Option<String>,
    now: i64,
) -> CoreResult<ResultOutcome> {
    Ok(record_result_from(s, command_id, None, success, error, now)
        .await?
        .outcome)
}

/// [`record_result`] as bank `from` answered it: a command of another bank
/// is refused (`WrongLocker`) in the same write that would record it.
pub async fn record_result_from(
    s: &Services,
    command_id: Uuid,
    from: Option<Uuid>,
    success: bool,
    error: Option<String>,
    now: i64,
) -> CoreResult<Recorded> {
    let result = if success {
        "action_completed"
    } else {
        "action_failed"
    };
    let decide = move |status, failure: Option<FailureReason>, late: Option<&str>| match status {
        OpenStatus::Accepted | OpenStatus::Sent => Some(vec![if success {
            DomainEvent::CompartmentOpened { command_id }
        } else {
            DomainEvent::CompartmentOpenFailed {
                command_id,
                reason: FailureReason::DeviceError,
                detail: error.clone(),
            }
        }]),
        OpenStatus::Failed if failure != Some(FailureReason::DeviceError) && late.is_none() => {
            Some(vec![DomainEvent::CompartmentOpenLateResult {
                command_id,
                result: result.into(),
                error: error.clone(),
            }])
        }
        _ => None,
    };
    let done = transition(s, command_id, now, None, from, Arc::new(decide)).await?;
    let outcome = match done.events.as_deref() {
        _ if from.is_some_and(|b| b != done.bank) => ResultOutcome::WrongLocker,
        Some([DomainEvent::CompartmentOpenLateResult { .. }]) => ResultOutcome::Late,
        Some(_) => ResultOutcome::Applied,
        None if matches!(done.status, OpenStatus::Denied | OpenStatus::Requested) => {
            ResultOutcome::NotSent
        }
        None => ResultOutcome::Duplicate,
    };
    let round_trip_ms = (outcome == ResultOutcome::Applied)
        .then(|| done.sent_at.map(|sent| (now - sent).max(0)))
        .flatten();
    Ok(Recorded {
        outcome,
        round_trip_ms,
    })
}

/// The send reactor gave up: `failed` with `send_failed`.
pub async fn record_send_failure(
    s: &Services,
    command_id: Uuid,
    detail: &str,
    now: i64,
) -> CoreResult<bool> {
    let detail = detail.to_string();
    let decide = move |status, _: Option<FailureReason>, _: Option<&str>| {
        (status == OpenStatus::Accepted).then(|| {
            vec![DomainEvent::CompartmentOpenFailed {
                command_id,
                reason: FailureReason::SendFailed,
                detail: Some(detail.clone()),
            }]
        })
    };
    Ok(transition(s, command_id, now, None, None, Arc::new(decide))
        .await?
        .events
        .is_some())
}

/// Fires one due timeout: claims the timer and, if the command is still
/// waiting, fails it with `timeout`, in one group-committed write.
pub async fn fire_timeout(
    s: &Services,
    timer_id: &str,
    command_id: Uuid,
    now: i64,
) -> CoreResult<bool> {
    let mode = s.mode();
    // A `sent` or a result committed by another node between the reads
    // and the append conflicts: decide again on the new state.
    for _ in 0..store::MAX_RETRIES {
        let timer = timer_id.to_string();
        let written = s
            .writes
            .write_reading(command_id, Reads::Command(command_id), move |conn| {
                let timer = timer.clone();
                Box::pin(async move {
                    if !timers::claim(conn.writer().await?, &timer, now).await? {
                        return Ok(((), Staged::default()));
                    }
                    let Some(state) = conn.command_row(command_id).await? else {
                        return Ok(((), Staged::default()));
                    };
                    if !matches!(state.status, OpenStatus::Accepted | OpenStatus::Sent) {
                        return Ok(((), Staged::default()));
                    }
                    let event = DomainEvent::CompartmentOpenFailed {
                        command_id,
                        reason: FailureReason::Timeout,
                        detail: None,
                    };
                    let staged = conn
                        .stage(
                            mode,
                            AGGREGATE,
                            command_id,
                            state.version,
                            vec![event],
                            &Metadata::system(state.parties.tenant, command_id),
                            now,
                            Some(state.parties),
                        )
                        .await?;
                    Ok(((), staged))
                })
            })
            .await;
        let ((), written) = match written {
            Ok(w) => w,
            Err(CoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        };
        let timed_out = !written.events.is_empty();
        if timed_out {
            let ended: Vec<DomainEvent> = written.events.iter().map(|e| e.event.clone()).collect();
            count_final(&ended);
            tracing::info!(%command_id, "open command timed out");
        }
        s.published(&written);
        return Ok(timed_out);
    }
    Err(CoreError::Conflict(format!(
        "command {command_id} kept changing; its timeout is tried again"
    )))
}

const VIEW_COLUMNS: &str = "command_id, tenant_id, compartment_id, bank_id, user_id, actor_id, override, \
    override_reason, status, denial_reason, failure_reason, failure_detail, late_result, requested_at, authorized_at, \
    denied_at, sent_at, opened_at, failed_at, late_result_at";

fn view_from_row(r: &sqlx::any::AnyRow) -> CoreResult<OpenRequestView> {
    let id = |c: &str| -> CoreResult<Uuid> { parse_uuid(&r.try_get::<String, _>(c)?) };
    Ok(OpenRequestView {
        command_id: id("command_id")?,
        tenant_id: id("tenant_id")?,
        compartment_id: id("compartment_id")?,
        locker_bank_id: id("bank_id")?,
        user_id: id("user_id")?,
        actor_id: id("actor_id")?,
        override_: r.try_get::<i64, _>("override")? != 0,
        override_reason: r.try_get("override_reason")?,
        status: parse_wire(&r.try_get::<String, _>("status")?)?,
        denial_reason: parse_wire_opt(r.try_get("denial_reason")?)?,
        failure_reason: parse_wire_opt(r.try_get("failure_reason")?)?,
        failure_detail: r.try_get("failure_detail")?,
        late_result: r.try_get("late_result")?,
        requested_at: r.try_get("requested_at")?,
        authorized_at: r.try_get("authorized_at")?,
        denied_at: r.try_get("denied_at")?,
        sent_at: r.try_get("sent_at")?,
        opened_at: r.try_get("opened_at")?,
        failed_at: r.try_get("failed_at")?,
        late_result_at: r.try_get("late_result_at")?,
    })
}

/// One command, if `caller` may see it: its requester, or an admin of its
/// tenant. Anyone else gets `None` (the API answers 404).
pub async fn get_open_request(
    s: &Services,
    caller: &Caller,
    command_id: Uuid,
) -> CoreResult<Option<OpenRequestView>> {
    let row = sqlx::query(&format!(
        "SELECT {VIEW_COLUMNS} FROM open_requests WHERE command_id = $1"
    ))
    .bind(command_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?;
    let Some(view) = row.as_ref().map(view_from_row).transpose()? else {
        return Ok(None);
    };
    let visible = view.user_id == caller.user.id
        || (caller.is_admin() && view.tenant_id == caller.user.tenant_id);
    Ok(visible.then_some(view))
}

/// Filters for the admin history.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub status: Option<OpenStatus>,
    pub locker_bank: Option<Uuid>,
    pub user: Option<Uuid>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub page: i64,
    pub per_page: i64,
}

/// A page of the tenant's commands, newest first, and the total count.
pub async fn history(
    s: &Services,
    tenant_id: Uuid,
    f: &HistoryFilter,
) -> CoreResult<(Vec<OpenRequestView>, i64)> {
    let mut clauses = vec!["tenant_id = $1".to_string()];
    let mut binds: Vec<String> = vec![tenant_id.to_string()];
    let mut ints: Vec<(usize, i64)> = Vec::new();
    let mut next = 2;
    for (col, val) in [
        ("status", f.status.map(|s| s.as_str().to_string())),
        ("bank_id", f.locker_bank.map(|u| u.to_string())),
        ("user_id", f.user.map(|u| u.to_string())),
    ] {
        if let Some(v) = val {
            clauses.push(format!("{col} = ${next}"));
            binds.push(v);
            next += 1;
        }
    }
    for (op, val) in [(">=", f.from), ("<", f.to)] {
        if let Some(v) = val {
            clauses.push(format!("requested_at {op} ${next}"));
            ints.push((next, v));
            next += 1;
        }
    }
    let filter = clauses.join(" AND ");
    let per_page = f.per_page.clamp(1, 200);
    let offset = (f.page.max(1) - 1) * per_page;
    let count_sql = format!("SELECT COUNT(*) AS n FROM open_requests WHERE {filter}");
    let page_sql = format!(
        "SELECT {VIEW_COLUMNS} FROM open_requests WHERE {filter} ORDER BY requested_at DESC, command_id DESC LIMIT {per_page} OFFSET {offset}"
    );
    let mut count = sqlx::query(&count_sql);
    let mut page = sqlx::query(&page_sql);
    for b in &binds {
        count = count.bind(b.clone());
        page = page.bind(b.clone());
    }
    for (_, v) in &ints {
        count = count.bind(*v);
        page = page.bind(*v);
    }
    let total: i64 = count.fetch_one(&s.db.pool).await?.try_get("n")?;
    let rows = page.fetch_all(&s.db.pool).await?;
    Ok((
        rows.iter().map(view_from_row).collect::<CoreResult<_>>()?,
        total,
    ))
}

/// Opens that ended in one minute (the dashboard's chart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub opened: i64,
    pub failed: i64,
}

/// The admin dashboard's figures for a tenant at `now` (ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardStats {
    /// Commands opened since midnight UTC.
    pub opened_today: i64,
    /// Commands failed in the last 60 minutes.
    pub failed_last_hour: i64,
    /// The last 60 minutes, oldest first, one entry per minute (zeros
    /// included), the current minute last.
    pub per_minute: Vec<MinuteCount>,
}

pub async fn dashboard_stats(
    s: &Services,
    tenant_id: Uuid,
    now: i64,
) -> CoreResult<DashboardStats> {
    const MINUTE: i64 = 60_000;
    let today = now - now.rem_euclid(86_400_000);
    let hour_ago = now - 60 * MINUTE;
    let tenant = tenant_id.to_string();
    let opened_today: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM open_requests WHERE tenant_id = $1 AND opened_at >= $2",
    )
    .bind(&tenant)
    .bind(today)
    .fetch_one(&s.db.pool)
    .await?
    .try_get("n")?;
    let failed_last_hour: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM open_requests WHERE tenant_id = $1 AND failed_at >= $2",
    )
    .bind(&tenant)
    .bind(hour_ago)
    .fetch_one(&s.db.pool)
    .await?
    .try_get("n")?;
    let last = now.div_euclid(MINUTE);
    let first = last - 59;
    let mut per_minute: Vec<MinuteCount> = (first..=last)
        .map(|minute| MinuteCount {
            minute,
            opened: 0,
            failed: 0,
        })
        .collect();
    for column in ["opened_at", "failed_at"] {
        let rows = sqlx::query(&format!(
            "SELECT {column} / {MINUTE} AS m, COUNT(*) AS n FROM open_requests \
             WHERE tenant_id = $1 AND {column} >= $2 GROUP BY {column} / {MINUTE}"
        ))
        .bind(&tenant)
        .bind(first * MINUTE)
        .fetch_all(&s.db.pool)
        .await?;
        for r in rows {
            let minute: i64 = r.try_get("m")?;
            let n: i64 = r.try_get("n")?;
            if let Some(slot) = per_minute.get_mut((minute - first) as usize) {
                if column == "opened_at" {
                    slot.opened = n;
                } else {
                    slot.failed = n;
                }
            }
        }
    }
    Ok(DashboardStats {
        opened_today,
        failed_last_hour,
        per_minute,
    })
}
