//! Reactors: the side effects that run after commit, from the outbox:
//! `send_open` hands an authorized command to the [`LockerGateway`] (the
//! MQTT bridge, or the recording stand-in), `disable_locker` disables a
//! decommissioned bank's broker account; and the timers they fire.
//!
//! [`crate::workers`] runs the jobs (each under a deadline, every gateway
//! call under its own).

use std::collections::HashMap;

use sqlx::Row;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    error::{parse_wire, CoreResult},
    eventstore::outbox,
    eventstore::timers,
    gateway::{call_gateway, OpenCommand},
    identity::accounts::parse_uuid,
    now_ms,
    opens::{self, OpenStatus},
    services::Services,
    webhooks,
};

/// The commands behind authorized events (by event id) that still wait
/// to be sent, in one read: an event whose command was sent, failed or
/// timed out meanwhile is absent.
pub async fn pending_commands(
    s: &Services,
    event_ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, OpenCommand>> {
    let mut out = HashMap::with_capacity(event_ids.len());
    for chunk in event_ids.chunks(PENDING_PER_STATEMENT) {
        let list = crate::eventstore::sql::in_list(chunk.len());
        let sql = format!(
            "SELECT e.event_id, o.command_id, o.bank_id, b.serial, c.number, o.status, o.authorized_at \
             FROM stored_events e JOIN open_requests o ON o.command_id = e.aggregate_uuid \
             JOIN locker_banks b ON b.id = o.bank_id JOIN compartments c ON c.id = o.compartment_id \
             WHERE e.event_id IN ({list})"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&s.db.pool).await? {
            let status: OpenStatus = parse_wire(&row.try_get::<String, _>("status")?)?;
            if status != OpenStatus::Accepted {
                continue;
            }
            let issued_at: i64 = row
                .try_get::<Option<i64>, _>("authorized_at")?
                .unwrap_or_else(now_ms);
            out.insert(
                parse_uuid(&row.try_get::<String, _>("event_id")?)?,
                OpenCommand {
                    command_id: parse_uuid(&row.try_get::<String, _>("command_id")?)?,
                    locker_bank_id: parse_uuid(&row.try_get::<String, _>("bank_id")?)?,
                    serial: row.try_get("serial")?,
                    compartment: row.try_get("number")?,
                    issued_at,
                    expires_at: issued_at + s.settings.open_timeout.as_millis() as i64,
                },
            );
        }
    }
    Ok(out)
}

/// Events one read of [`pending_commands`] names at most.
const PENDING_PER_STATEMENT: usize = 256;

/// The command behind an authorized event, if it still waits to be sent.
async fn pending_command(s: &Services, event_id: Uuid) -> CoreResult<Option<OpenCommand>> {
    Ok(pending_commands(s, &[event_id]).await?.remove(&event_id))
}

/// What the outbox worker read for a job when it claimed it: for a send,
/// its command (`None`: nothing left to send). [`run_job`] reads it itself
/// when not given.
#[derive(Clone, Debug)]
pub enum Preloaded {
    Command(Option<OpenCommand>),
}

/// Delivers a stored webhook batch; a failure is retried with backoff
/// (`webhooks::MAX_ATTEMPTS`).
async fn deliver_webhook(s: &Services, job: &outbox::Job, now: i64) -> CoreResult<()> {
    let Some(sender) = &s.webhooks else {
        // Webhooks are no longer configured: nothing will send it.
        webhooks::delivered(&s.db, job.event_id).await?;
        outbox::complete(&s.db, job.id, now).await?;
        return Ok(());
    };
    let Some((url, body)) = webhooks::pending(&s.db, job.event_id).await? else {
        outbox::complete(&s.db, job.id, now).await?;
        return Ok(());
    };
    // A few deliveries at a time: a slow receiver must not take the
    // workers' slots from the lockers' commands. The rest wait their turn
    // (no attempt counted).
    let Ok(_permit) = webhooks::IN_FLIGHT.try_acquire() else {
        outbox::postpone(&s.db, job.id, now + webhooks::POSTPONE_MS).await?;
        return Ok(());
    };
    let sent = tokio::time::timeout(s.settings.gateway_deadline, sender.deliver(&url, &body))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {:?}",
                s.settings.gateway_deadline
            ))
        });
    match sent {
        Ok(()) => {
            metrics::counter!("lockstep_webhooks_delivered_total").increment(1);
            webhooks::delivered(&s.db, job.event_id).await?;
            outbox::complete(&s.db, job.id, now).await?;
        }
        Err(e) => {
            metrics::counter!("lockstep_webhooks_failed_total").increment(1);
            let outcome = outbox::fail_within(&s.db, job, &e, now, webhooks::MAX_ATTEMPTS).await?;
            tracing::warn!(%url, error = %e, ?outcome, "a webhook delivery failed");
        }
    }
    Ok(())
}

/// Runs one claimed outbox job (the workers bound it with a deadline).
pub async fn run_job(s: &Services, job: &outbox::Job, now: i64) -> CoreResult<()> {
    run_preloaded(s, job, None, now).await
}

/// [`run_job`] with what was read for it at its claim, if anything.
pub async fn run_preloaded(
    s: &Services,
    job: &outbox::Job,
    preloaded: Option<Preloaded>,
    now: i64,
) -> CoreResult<()> {
    match job.reactor.as_str() {
        outbox::SEND_OPEN => {
            let command = match preloaded {
                Some(Preloaded::Command(command)) => command,
                None => pending_command(s, job.event_id).await?,
            };
            let Some(command) = command else {
                // Already sent, failed or timed out: nothing left to do.
                outbox::complete(&s.db, job.id, now).await?;
                return Ok(());
            };
            let span = tracing::info_span!("send_open", command_id = %command.command_id);
            let sent = call_gateway(
                s.settings.gateway_deadline,
                "send_open",
                s.gateway.send_open(&command),
            )
            .instrument(span.clone())
            .await;
            match sent {
                Ok(()) => {
                    opens::record_sent_for(s, command.command_id, now_ms(), Some(job.id)).await?;
                }
                Err(e) => {
                    failed_send(s, job, &command, &e.0, now)
                        .instrument(span)
                        .await?
                }
            }
        }
        outbox::DISABLE_LOCKER => {
            // `_turn`: the bank's account changes wait until this one is out.
            let Some((username, _turn)) =
                crate::provisioning::account_of_event(s, job.event_id).await?
            else {
                outbox::complete(&s.db, job.id, now).await?;
                return Ok(());
            };
            match call_gateway(
                s.settings.gateway_deadline,
                "disable_account",
                s.gateway.disable_account(&username),
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(%username, "locker broker account disabled");
                    outbox::complete(&s.db, job.id, now).await?;
                }
                Err(e) => {
                    let outcome = outbox::fail(&s.db, job, &e.0, now).await?;
                    tracing::error!(%username, error = %e, ?outcome, "disabling a locker account failed");
                }
            }
        }
        outbox::PUSHER_WEBHOOK => deliver_webhook(s, job, now).await?,
        other => {
            tracing::error!(reactor = other, "unknown reactor; dead letter");
            let dead = outbox::Job {
                attempts: outbox::MAX_ATTEMPTS,
                ..job.clone()
            };
            outbox::fail(&s.db, &dead, "unknown reactor", now).await?;
        }
    }
    Ok(())
}

/// A send attempt failed: retry later, or dead-letter it and fail the
/// command with `send_failed`.
async fn failed_send(
    s: &Services,
    job: &outbox::Job,
    command: &OpenCommand,
    error: &str,
    now: i64,
) -> CoreResult<()> {
    match outbox::fail(&s.db, job, error, now).await? {
        outbox::Failure::RetryAt(at) => {
            tracing::warn!(command_id = %command.command_id, error, retry_at = at, "send failed; will retry");
        }
        outbox::Failure::Dead => {
            tracing::error!(command_id = %command.command_id, error, "send failed for good; dead letter");
            opens::record_send_failure(s, command.command_id, error, now).await?;
        }
    }
    Ok(())
}

/// A job that panicked, errored or ran past its deadline: counted as a
/// failed attempt (retried or dead-lettered); a dead send fails its command.
pub async fn give_up(s: &Services, job: &outbox::Job, why: &str, now: i64) -> CoreResult<()> {
    let now = now.max(now_ms());
    tracing::error!(
        why,
        attempts = job.attempts + 1,
        "an outbox job did not finish"
    );
    if job.reactor == outbox::SEND_OPEN {
        if let Some(command) = pending_command(s, job.event_id).await? {
            return failed_send(s, job, &command, why, now).await;
        }
        // Sent or ended meanwhile: nothing is left to retry.
        return outbox::complete(&s.db, job.id, now).await;
    }
    let max_attempts = match job.reactor.as_str() {
        outbox::PUSHER_WEBHOOK => webhooks::MAX_ATTEMPTS,
        _ => outbox::MAX_ATTEMPTS,
    };
    outbox::fail_within(&s.db, job, why, now, max_attempts)
        .await
        .map(|_| ())
}

/// Fires every due timer once; returns how many fired. A timer that fails
/// (a write conflict with the command's own result, a database hiccup) is
/// logged and left for the next round: it never holds up the timers after it.
pub async fn fire_due_timers(s: &Services, now: i64) -> CoreResult<usize> {
    let due = timers::due(&s.db, now, 256).await?;
    let mut fired = 0;
    for t in due {
        if t.kind != timers::OPEN_TIMEOUT {
            continue;
        }
        match opens::fire_timeout(s, &t.id, t.subject, now).await {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err(e) => {
                metrics::counter!("lockstep_timer_errors_total").increment(1);
                tracing::warn!(timer = %t.id, error = %e, "a timer could not fire; retried next round");
            }
        }
    }
    Ok(fired)
}
