//! The background workers of one process, each its own supervised task:
//! the outbox, the timers, and maintenance (offline sweep, log pruning,
//! the stall watchdog). None waits on another, so deadlines fire even when
//! every send is stuck.
//!
//! - Every outbox job runs in a task of its own under
//!   `CoreSettings::job_deadline`; a job that panics or runs past it is
//!   aborted, and its row is retried or dead-lettered like a failed send.
//! - Every loop iteration is bounded too, and a loop whose task panics is
//!   restarted (logged, counted in `lockstep_worker_restarts_total`).
//! - Each loop records when it last finished an iteration; [`health`]
//!   turns that and the overdue work in the tables into the stall report
//!   that `/readyz`, `/metrics` and the watchdog's error log share.

use std::{collections::BTreeMap, future::Future, sync::atomic::Ordering, time::Duration};

use serde::Serialize;
use sqlx::Row;
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;

pub mod progress;

pub use progress::{SharedHealth, Worker, WorkerHealth};

use crate::{error::CoreResult, eventstore::outbox, now_ms, reactors, services::Services};

/// What the stall report says about one process and its database.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    /// Age of the oldest pending outbox job (seconds; 0 when none).
    pub outbox_oldest_pending_secs: f64,
    /// How long the most overdue pending job has been due and unclaimed
    /// (seconds): the outbox's lag.
    pub outbox_overdue_secs: f64,
    /// Timers due and not fired.
    pub timers_overdue: i64,
    /// How long the oldest of them has been due (seconds).
    pub timers_oldest_overdue_secs: f64,
    /// Seconds since each running loop last finished an iteration.
    pub worker_tick_age_secs: BTreeMap<&'static str, f64>,
    /// Why the process is stalled; empty when it is not.
    pub stalls: Vec<String>,
}

impl Health {
    pub fn stalled(&self) -> bool {
        !self.stalls.is_empty()
    }
}

/// The stall report at `now`: overdue work in the tables, and loops that
/// stopped making progress, against `CoreSettings::stall_after`.
pub async fn health(s: &Services, now: i64) -> CoreResult<Health> {
    let limit = s.settings.stall_after.as_secs_f64();
    let secs = |ms: i64| (ms.max(0) as f64) / 1000.0;
    let outbox = sqlx::query(
        "SELECT MIN(created_at) AS oldest, MIN(next_attempt_at) AS due \
         FROM outbox WHERE status = 'pending'",
    )
    .fetch_one(&s.db.pool)
    .await?;
    let oldest: Option<i64> = outbox.try_get("oldest")?;
    let due: Option<i64> = outbox.try_get("due")?;
    let timers = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(due_at) AS oldest FROM timers \
         WHERE fired_at IS NULL AND due_at <= $1",
    )
    .bind(now)
    .fetch_one(&s.db.pool)
    .await?;
    let mut h = Health {
        outbox_oldest_pending_secs: oldest.map_or(0.0, |t| secs(now - t)),
        outbox_overdue_secs: due.map_or(0.0, |t| secs(now - t)),
        timers_overdue: timers.try_get("n")?,
        timers_oldest_overdue_secs: timers
            .try_get::<Option<i64>, _>("oldest")?
            .map_or(0.0, |t| secs(now - t)),
        ..Health::default()
    };
    if h.outbox_overdue_secs > limit {
        h.stalls.push(format!(
            "an outbox job has been due for {:.0} s without being run",
            h.outbox_overdue_secs
        ));
    }
    if h.timers_oldest_overdue_secs > limit {
        h.stalls.push(format!(
            "{} timer(s) overdue, the oldest by {:.0} s",
            h.timers_overdue, h.timers_oldest_overdue_secs
        ));
    }
    for w in Worker::ALL {
        let last = s.workers.last_tick(w);
        if last == 0 {
            continue; // not running in this process (tests, CLI)
        }
        let age = secs(now - last);
        h.worker_tick_age_secs.insert(w.name(), age);
        if age > limit {
            h.stalls.push(format!(
                "the {} worker has made no progress for {age:.0} s",
                w.name()
            ));
        }
    }
    Ok(h)
}

/// Runs `work` with a deadline; `None` (and a warning) if it ran past it.
async fn bounded<T>(what: &str, deadline: Duration, work: impl Future<Output = T>) -> Option<T> {
    match tokio::time::timeout(deadline, work).await {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(what, ?deadline, "a worker step ran past its deadline");
            None
        }
    }
}

/// Starts every loop under its supervisor; the handle resolves once all
/// of them stopped after `shutdown`.
pub fn spawn_workers(s: Services, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut loops = JoinSet::new();
        for w in Worker::ALL {
            loops.spawn(supervise(w, s.clone(), shutdown.clone()));
        }
        while loops.join_next().await.is_some() {}
    })
}

/// Runs `w`, restarting it whenever its task panics, until shutdown.
async fn supervise(w: Worker, s: Services, shutdown: watch::Receiver<bool>) {
    loop {
        let task = tokio::spawn(run(w, s.clone(), shutdown.clone()));
        match task.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                s.workers.restarts[w.index()].fetch_add(1, Ordering::Relaxed);
                metrics::counter!("lockstep_worker_restarts_total", "worker" => w.name())
                    .increment(1);
                tracing::error!(worker = w.name(), error = %e, "a worker panicked; restarting it");
                if *shutdown.borrow() {
                    return;
                }
                // A loop that panics at once again must not spin.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => return,
        }
    }
}

async fn run(w: Worker, s: Services, shutdown: watch::Receiver<bool>) {
    match w {
        Worker::Outbox => outbox_loop(s, shutdown).await,
        Worker::Timers => timer_loop(s, shutdown).await,
        Worker::Maintenance => maintenance_loop(s, shutdown).await,
    }
}

/// Waits for `wait` or shutdown; true when it is time to stop.
async fn pause(shutdown: &mut watch::Receiver<bool>, wait: impl Future<Output = ()>) -> bool {
    tokio::select! {
        _ = wait => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}

const POLL: Duration = Duration::from_millis(250);

/// How many outbox jobs one process runs at once.
const OUTBOX_IN_FLIGHT: usize = 256;

async fn outbox_loop(s: Services, mut shutdown: watch::Receiver<bool>) {
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let now = now_ms();
        let room = OUTBOX_IN_FLIGHT.saturating_sub(running.len());
        let span = tracing::debug_span!("worker_tick", worker = "outbox");
        let claimed = bounded(
            "claiming outbox jobs",
            s.settings.job_deadline,
            async {
                if room == 0 {
                    return Ok(Vec::new());
                }
                outbox::claim_due(&s.db, now, room as i64).await
            }
            .instrument(span),
        )
        .await;
        match claimed {
            Some(Ok(jobs)) => {
                let mut preloaded = preload(&s, &jobs).await;
                for job in jobs {
                    let pre = preloaded.remove(&job.id);
                    running.spawn(run_job_bounded(s.clone(), job, pre, now));
                }
                s.workers.tick(Worker::Outbox, now_ms());
            }
            Some(Err(e)) => tracing::error!(error = %e, "claiming outbox jobs failed"),
            None => {}
        }
        // A finished job wakes the loop only when it was full: otherwise
        // the next claim waits for new work (a commit's wake-up) or the
        // poll, not for every job's end (one claim per job, for nothing).
        let full = running.len() >= OUTBOX_IN_FLIGHT;
        let stop = tokio::select! {
            _ = s.wake.notified() => false,
            Some(_) = running.join_next(), if full => false,
            _ = tokio::time::sleep(POLL) => false,
            _ = shutdown.changed() => true,
        };
        if stop || *shutdown.borrow() {
            break;
        }
    }
    // Jobs under way get a moment to finish; the rest are released by
    // their lease and run again later (sends are idempotent by command_id).
    let drain = async { while running.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

/// The commands of the claimed sends, in one read (by job id), rather
/// than a read per job. On a failed read each job reads its own.
async fn preload(
    s: &Services,
    jobs: &[outbox::Job],
) -> std::collections::HashMap<i64, reactors::Preloaded> {
    let sends: Vec<&outbox::Job> = jobs
        .iter()
        .filter(|j| j.reactor == outbox::SEND_OPEN)
        .collect();
    if sends.is_empty() {
        return Default::default();
    }
    let events: Vec<uuid::Uuid> = sends.iter().map(|j| j.event_id).collect();
    match bounded(
        "reading the claimed sends' commands",
        s.settings.job_deadline,
        reactors::pending_commands(s, &events),
    )
    .await
    {
        Some(Ok(mut commands)) => sends
            .iter()
            .map(|j| {
                let command = commands.remove(&j.event_id);
                (j.id, reactors::Preloaded::Command(command))
            })
            .collect(),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "reading the claimed sends' commands failed; each reads its own");
            Default::default()
        }
        None => Default::default(),
    }
}

/// Runs every due outbox job once, each as the workers do (in its own
/// task, under the job deadline); returns how many ran. For tests, which
/// step the outbox by hand.
#[cfg(any(test, feature = "testing"))]
pub async fn run_outbox_once(s: &Services, now: i64) -> CoreResult<usize> {
    let jobs = outbox::claim_due(&s.db, now, 64).await?;
    let count = jobs.len();
    // The claimed jobs run concurrently: each waits on the broker (PUBACK)
    // and writes its own transaction, so one slow send holds up no other.
    let mut running = tokio::task::JoinSet::new();
    for job in jobs {
        running.spawn(run_job_bounded(s.clone(), job, None, now));
    }
    while running.join_next().await.is_some() {}
    Ok(count)
}

/// Runs one claimed job in a task of its own, under the job deadline: a
/// job that panics or hangs is aborted and counted as a failed attempt.
async fn run_job_bounded(
    s: Services,
    job: outbox::Job,
    preloaded: Option<reactors::Preloaded>,
    now: i64,
) {
    let span = tracing::info_span!("reactor", reactor = %job.reactor, event_id = %job.event_id, job_id = job.id);
    let inner = tokio::spawn({
        let (s, job) = (s.clone(), job.clone());
        async move { reactors::run_preloaded(&s, &job, preloaded, now).await }
            .instrument(span.clone())
    });
    let abort = inner.abort_handle();
    let why = match tokio::time::timeout(s.settings.job_deadline, inner).await {
        Ok(Ok(Ok(()))) => return,
        Ok(Ok(Err(e))) => {
            metrics::counter!("lockstep_outbox_job_errors_total", "kind" => "error").increment(1);
            format!("the job failed: {e}")
        }
        Ok(Err(e)) => {
            metrics::counter!("lockstep_outbox_job_errors_total", "kind" => "panic").increment(1);
            format!("the job panicked: {e}")
        }
        Err(_) => {
            abort.abort();
            metrics::counter!("lockstep_outbox_job_errors_total", "kind" => "deadline")
                .increment(1);
            format!(
                "the job ran past its deadline of {:?}",
                s.settings.job_deadline
            )
        }
    };
    let released = bounded(
        "releasing a failed outbox job",
        s.settings.job_deadline,
        reactors::give_up(&s, &job, &why, now),
    )
    .instrument(span.clone())
    .await;
    match released {
        Some(Ok(())) => {}
        // The lease releases it later.
        Some(Err(e)) => {
            tracing::error!(parent: &span, error = %e, %why, "a failed outbox job could not be released")
        }
        None => {}
    }
}

async fn timer_loop(s: Services, mut shutdown: watch::Receiver<bool>) {
    loop {
        let span = tracing::debug_span!("worker_tick", worker = "timers");
        let fired = bounded(
            "firing due timers",
            s.settings.job_deadline,
            reactors::fire_due_timers(&s, now_ms()).instrument(span),
        )
        .await;
        match fired {
            Some(Ok(_)) => s.workers.tick(Worker::Timers, now_ms()),
            Some(Err(e)) => tracing::error!(error = %e, "timer run failed"),
            None => {}
        }
        if pause(&mut shutdown, tokio::time::sleep(POLL)).await {
            break;
        }
    }
}

/// Offline sweep every 5 s, log pruning every minute, the watchdog every
/// 5 s.
async fn maintenance_loop(s: Services, mut shutdown: watch::Receiver<bool>) {
    let (mut last_sweep, mut last_prune, mut last_watch) = (0_i64, 0_i64, 0_i64);
    loop {
        let now = now_ms();
        let span = tracing::debug_span!("worker_tick", worker = "maintenance");
        let step = async {
            if now - last_sweep >= 5_000 {
                last_sweep = now;
                let after = s.settings.offline_after.as_millis() as i64;
                if let Err(e) = crate::lockers::sweep_offline(&s, now, after).await {
                    tracing::error!(error = %e, "offline sweep failed");
                }
            }
            if now - last_prune >= 60_000 {
                last_prune = now;
                let keys = s.login_throttle.prune(now);
                tracing::debug!(keys, "sign-in throttle pruned");
                let cutoff = now - s.settings.channel_retention.as_millis() as i64;
                match crate::eventstore::channels::prune(&s.db, cutoff).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "channel log pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "channel log pruning failed"),
                }
            }
            if now - last_watch >= 5_000 {
                last_watch = now;
                watch(&s, now).await;
            }
        }
        .instrument(span);
        if bounded("maintenance", s.settings.job_deadline, step)
            .await
            .is_some()
        {
            s.workers.tick(Worker::Maintenance, now_ms());
        }
        if pause(&mut shutdown, tokio::time::sleep(Duration::from_secs(1))).await {
            break;
        }
    }
}

/// The watchdog: publishes the stall report as gauges and logs an error
/// while the process is stalled.
async fn watch(s: &Services, now: i64) {
    match health(s, now).await {
        Ok(h) => {
            record_gauges(&h);
            if h.stalled() {
                tracing::error!(stalls = ?h.stalls, "workers stalled: {}", h.stalls.join("; "));
            }
        }
        Err(e) => tracing::error!(error = %e, "the stall report failed"),
    }
}

/// Sets the stall report's gauges (also done on every `/metrics` scrape).
pub fn record_gauges(h: &Health) {
    metrics::gauge!("lockstep_outbox_oldest_pending_seconds").set(h.outbox_oldest_pending_secs);
    metrics::gauge!("lockstep_outbox_overdue_seconds").set(h.outbox_overdue_secs);
    metrics::gauge!("lockstep_timers_overdue").set(h.timers_overdue as f64);
    metrics::gauge!("lockstep_timers_oldest_overdue_seconds").set(h.timers_oldest_overdue_secs);
    for (w, age) in &h.worker_tick_age_secs {
        metrics::gauge!("lockstep_worker_last_tick_age_seconds", "worker" => *w).set(*age);
    }
    metrics::gauge!("lockstep_stalled").set(if h.stalled() { 1.0 } else { 0.0 });
}
