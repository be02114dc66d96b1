//! Reactors: the side effects that run after commit, from the outbox.
//! `send_open` hands an authorized command to a [`LockerGateway`]; the MQTT
//! bridge will be the real gateway. Until then [`RecordingGateway`] stands
//! in: it sends nothing and records what it would have sent.
//!
//! [`crate::workers`] runs the jobs (each under a deadline, every gateway
//! call under its own) and fires due timers.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex,
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    accounts::parse_uuid, error::CoreResult, now_ms, opens, outbox, services::Services, timers,
};

/// What the locker receives (see docs/mqtt.md once the bridge exists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCommand {
    pub command_id: Uuid,
    pub locker_bank_id: Uuid,
    pub serial: String,
    pub compartment: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GatewayError(pub String);

/// A locker's own broker account, as created during provisioning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockerAccount {
    pub bank_id: Uuid,
    /// `locker-{bank_id}`; also the only client id it may connect with.
    pub username: String,
    pub password: String,
}

/// What the lockers' side of the world must do: deliver commands, manage
/// per-locker broker accounts, answer provisioning requests.
#[async_trait]
pub trait LockerGateway: Send + Sync {
    /// Returns once the broker has the command (PUBACK).
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError>;
    /// Creates the locker's broker account, or resets its password and
    /// enables it if it exists (a retried registration).
    async fn create_account(&self, account: &LockerAccount) -> Result<(), GatewayError>;
    /// Disables the account and disconnects a connected locker.
    async fn disable_account(&self, username: &str) -> Result<(), GatewayError>;
    /// Sends a provisioning reply to `provisioning/{client_id}/reply` and
    /// returns once the broker has it.
    async fn deliver_reply(&self, client_id: &str, reply: &[u8]) -> Result<(), GatewayError>;
}

/// Sends nothing; records every command it was given. The default until
/// the MQTT bridge is plugged in, and the gateway tests inspect.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    sent: Mutex<Vec<OpenCommand>>,
    accounts: Mutex<Vec<LockerAccount>>,
    disabled: Mutex<Vec<String>>,
    replies: Mutex<Vec<(String, Vec<u8>)>>,
    failures_to_inject: AtomicUsize,
}

impl RecordingGateway {
    pub fn sent(&self) -> Vec<OpenCommand> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn accounts(&self) -> Vec<LockerAccount> {
        self.accounts.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn disabled(&self) -> Vec<String> {
        self.disabled.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Every provisioning reply, as (client id, payload).
    pub fn replies(&self) -> Vec<(String, Vec<u8>)> {
        self.replies.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn injected_failure(&self) -> Result<(), GatewayError> {
        let inject = self
            .failures_to_inject
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if inject {
            return Err(GatewayError("injected failure".into()));
        }
        Ok(())
    }

    /// Makes the next `n` sends fail (to exercise retries and dead letters).
    pub fn fail_next(&self, n: usize) {
        self.failures_to_inject.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl LockerGateway for RecordingGateway {
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(command.clone());
        }
        Ok(())
    }

    async fn create_account(&self, account: &LockerAccount) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.push(account.clone());
        }
        Ok(())
    }

    async fn disable_account(&self, username: &str) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut disabled) = self.disabled.lock() {
            disabled.push(username.to_string());
        }
        Ok(())
    }

    async fn deliver_reply(&self, client_id: &str, reply: &[u8]) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut replies) = self.replies.lock() {
            replies.push((client_id.to_string(), reply.to_vec()));
        }
        Ok(())
    }
}

/// The command behind an authorized event, if it still waits to be sent.
async fn pending_command(s: &Services, event_id: Uuid) -> CoreResult<Option<OpenCommand>> {
    let row = sqlx::query(
        "SELECT o.command_id, o.bank_id, b.serial, c.number, o.status, o.authorized_at \
         FROM stored_events e JOIN open_requests o ON o.command_id = e.aggregate_uuid \
         JOIN locker_banks b ON b.id = o.bank_id JOIN compartments c ON c.id = o.compartment_id \
         WHERE e.event_id = $1",
    )
    .bind(event_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status")?;
    if status != "accepted" {
        return Ok(None);
    }
    let issued_at: i64 = row
        .try_get::<Option<i64>, _>("authorized_at")?
        .unwrap_or_else(now_ms);
    Ok(Some(OpenCommand {
        command_id: parse_uuid(&row.try_get::<String, _>("command_id")?)?,
        locker_bank_id: parse_uuid(&row.try_get::<String, _>("bank_id")?)?,
        serial: row.try_get("serial")?,
        compartment: row.try_get("number")?,
        issued_at,
        expires_at: issued_at + s.settings.open_timeout.as_millis() as i64,
    }))
}

/// Runs every due outbox job once, each as the workers do (in its own
/// task, under the job deadline); returns how many ran.
pub async fn run_outbox_once(s: &Services, now: i64) -> CoreResult<usize> {
    let jobs = outbox::claim_due(&s.db, now, 64).await?;
    let count = jobs.len();
    // The claimed jobs run concurrently: each waits on the broker (PUBACK)
    // and writes its own transaction, so one slow send holds up no other.
    let mut running = tokio::task::JoinSet::new();
    for job in jobs {
        running.spawn(crate::workers::run_job_bounded(s.clone(), job, now));
    }
    while running.join_next().await.is_some() {}
    Ok(count)
}

/// Calls the gateway under `CoreSettings::gateway_deadline`: a broker that
/// never answers is a failed call, not a stuck worker.
pub async fn call_gateway<T>(
    s: &Services,
    what: &str,
    call: impl std::future::Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    let deadline = s.settings.gateway_deadline;
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("lockstep_gateway_timeouts_total", "call" => what.to_string())
                .increment(1);
            Err(GatewayError(format!(
                "{what}: no answer within {deadline:?}"
            )))
        }
    }
}

/// Runs one claimed outbox job (the workers bound it with a deadline).
pub async fn run_job(s: &Services, job: &outbox::Job, now: i64) -> CoreResult<()> {
    match job.reactor.as_str() {
        outbox::SEND_OPEN => {
            let Some(command) = pending_command(s, job.event_id).await? else {
                // Already sent, failed or timed out: nothing left to do.
                outbox::complete(&s.db, job.id, now).await?;
                return Ok(());
            };
            let span = tracing::info_span!("send_open", command_id = %command.command_id);
            let sent = call_gateway(s, "send_open", s.gateway.send_open(&command))
                .instrument(span.clone())
                .await;
            match sent {
                Ok(()) => {
                    opens::record_sent(s, command.command_id, now_ms()).await?;
                    outbox::complete(&s.db, job.id, now).await?;
                }
                Err(e) => {
                    failed_send(s, job, &command, &e.0, now)
                        .instrument(span)
                        .await?
                }
            }
        }
        outbox::DISABLE_LOCKER => {
            let Some(username) = crate::provisioning::account_of_event(s, job.event_id).await?
            else {
                outbox::complete(&s.db, job.id, now).await?;
                return Ok(());
            };
            match call_gateway(s, "disable_account", s.gateway.disable_account(&username)).await {
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
    outbox::fail(&s.db, job, why, now).await.map(|_| ())
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
