//! What each worker loop last did: when it finished an iteration and how
//! often it was restarted. A leaf module, so `Services` can hold it without
//! depending on the loops themselves.

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

/// The loops one process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Worker {
    Outbox,
    Timers,
    Maintenance,
}

impl Worker {
    pub const ALL: [Worker; 3] = [Worker::Outbox, Worker::Timers, Worker::Maintenance];

    pub fn name(self) -> &'static str {
        match self {
            Worker::Outbox => "outbox",
            Worker::Timers => "timers",
            Worker::Maintenance => "maintenance",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// When each loop last finished an iteration (ms; 0 = not started), and
/// how often each was restarted. Shared by every clone of `Services`.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    ticks: [AtomicI64; 3],
    pub(crate) restarts: [AtomicI64; 3],
}

impl WorkerHealth {
    pub(crate) fn tick(&self, w: Worker, now: i64) {
        self.ticks[w.index()].store(now, Ordering::Relaxed);
    }

    /// When `w` last finished an iteration (0 if it never ran).
    pub fn last_tick(&self, w: Worker) -> i64 {
        self.ticks[w.index()].load(Ordering::Relaxed)
    }

    /// How many times `w` was restarted after a panic.
    pub fn restarts(&self, w: Worker) -> i64 {
        self.restarts[w.index()].load(Ordering::Relaxed)
    }
}

/// The shared handle type, for `Services`.
pub type SharedHealth = Arc<WorkerHealth>;
