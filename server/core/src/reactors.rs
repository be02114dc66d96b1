//! Reactors: the side effects that run after commit, from the outbox.
//! `send_open` hands an authorized command to a [`LockerGateway`]; the MQTT
//! bridge will be the real gateway. Until then [`RecordingGateway`] stands
//! in: it sends nothing and records what it would have sent.
//!
//! The workers ([`spawn_workers`]) run the outbox and fire due timers, on
//! every commit (woken through `Services::wake`) and every 250 ms.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex,
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
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

/// Runs every due outbox job once; returns how many ran.
pub async fn run_outbox_once(s: &Services, now: i64) -> CoreResult<usize> {
    let jobs = outbox::claim_due(&s.db, now, 64).await?;
    let count = jobs.len();
    // The claimed jobs run concurrently: each waits on the broker (PUBACK)
    // and writes its own transaction, so one slow send holds up no other.
    let mut running = tokio::task::JoinSet::new();
    for job in jobs {
        let s = s.clone();
        running.spawn(async move { run_job(&s, &job, now).await });
    }
    let mut first_error = None;
    while let Some(done) = running.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "an outbox job panicked"),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(count),
    }
}

/// Runs one claimed outbox job.
async fn run_job(s: &Services, job: &outbox::Job, now: i64) -> CoreResult<()> {
    {
        let span = tracing::info_span!("reactor", reactor = %job.reactor, event_id = %job.event_id);
        let _enter = span.enter();
        match job.reactor.as_str() {
            outbox::SEND_OPEN => {
                let Some(command) = pending_command(s, job.event_id).await? else {
                    // Already sent, failed or timed out: nothing left to do.
                    outbox::complete(&s.db, job.id, now).await?;
                    return Ok(());
                };
                match s.gateway.send_open(&command).await {
                    Ok(()) => {
                        opens::record_sent(s, command.command_id, now_ms()).await?;
                        outbox::complete(&s.db, job.id, now).await?;
                    }
                    Err(e) => match outbox::fail(&s.db, job, &e.0, now).await? {
                        outbox::Failure::RetryAt(at) => {
                            tracing::warn!(command_id = %command.command_id, error = %e, retry_at = at, "send failed; will retry");
                        }
                        outbox::Failure::Dead => {
                            tracing::error!(command_id = %command.command_id, error = %e, "send failed for good; dead letter");
                            opens::record_send_failure(s, command.command_id, &e.0, now).await?;
                        }
                    },
                }
            }
            outbox::DISABLE_LOCKER => {
                let Some(username) = crate::provisioning::account_of_event(s, job.event_id).await?
                else {
                    outbox::complete(&s.db, job.id, now).await?;
                    return Ok(());
                };
                match s.gateway.disable_account(&username).await {
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
    }
    Ok(())
}

/// Fires every due timer once; returns how many fired.
pub async fn fire_due_timers(s: &Services, now: i64) -> CoreResult<usize> {
    let due = timers::due(&s.db, now, 256).await?;
    let mut fired = 0;
    for t in due {
        if t.kind == timers::OPEN_TIMEOUT && opens::fire_timeout(s, &t.id, t.subject, now).await? {
            fired += 1;
        }
    }
    Ok(fired)
}

/// How many outbox jobs one process runs at once.
const OUTBOX_IN_FLIGHT: usize = 256;

type Running = tokio::task::JoinSet<CoreResult<()>>;

/// Claims due outbox jobs into `running` (as many as it has room for) and
/// starts them without waiting: a job waiting on the broker holds up none
/// claimed after it.
async fn feed_outbox(s: &Services, now: i64, running: &mut Running) -> CoreResult<usize> {
    let room = OUTBOX_IN_FLIGHT.saturating_sub(running.len());
    if room == 0 {
        return Ok(0);
    }
    let jobs = outbox::claim_due(&s.db, now, room as i64).await?;
    let count = jobs.len();
    for job in jobs {
        let s = s.clone();
        running.spawn(async move { run_job(&s, &job, now).await });
    }
    Ok(count)
}

fn report(done: Result<CoreResult<()>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "an outbox job failed"),
        Err(e) if e.is_cancelled() => {}
        Err(e) => tracing::error!(error = %e, "an outbox job panicked"),
    }
}

/// The background workers of one process, until `shutdown` resolves.
pub fn spawn_workers(
    s: Services,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        let mut last_prune = 0_i64;
        let mut last_sweep = 0_i64;
        let mut running = Running::new();
        loop {
            while let Some(done) = running.try_join_next() {
                report(done);
            }
            let now = now_ms();
            if let Err(e) = feed_outbox(&s, now, &mut running).await {
                tracing::error!(error = %e, "outbox run failed");
            }
            if let Err(e) = fire_due_timers(&s, now).await {
                tracing::error!(error = %e, "timer run failed");
            }
            if now - last_sweep > 5_000 {
                last_sweep = now;
                let after = s.settings.offline_after.as_millis() as i64;
                if let Err(e) = crate::lockers::sweep_offline(&s, now, after).await {
                    tracing::error!(error = %e, "offline sweep failed");
                }
            }
            if now - last_prune > 60_000 {
                last_prune = now;
                let cutoff = now - s.settings.channel_retention.as_millis() as i64;
                match crate::channels::prune(&s.db, cutoff).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "channel log pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "channel log pruning failed"),
                }
            }
            tokio::select! {
                _ = s.wake.notified() => {}
                Some(done) = running.join_next(), if !running.is_empty() => report(done),
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // Jobs under way get a moment to finish; the rest are released by
        // their lease and run again later (sends are idempotent by
        // command_id).
        let drain = async {
            while let Some(done) = running.join_next().await {
                report(done);
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    })
}
