//! Counting and timing: a lock-free log-bucket histogram (microseconds,
//! within 1.6 %), the sharded delivery counters the connections write to,
//! the error tally, and the final report (human lines and `RESULT {json}`).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// 64 buckets per power of two: a bucket is at most 1/64 of its values wide.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this have a bucket each.
const LINEAR: u64 = SUB * 2;
/// Values are clamped below 2^40 µs (12 days).
const MAX_BITS: u32 = 40;
const MAX_VALUE: u64 = (1 << MAX_BITS) - 1;
const BUCKETS: usize = (LINEAR + (MAX_BITS - SUB_BITS - 1) as u64 * SUB) as usize;

fn bucket_of(v: u64) -> usize {
    let v = v.min(MAX_VALUE);
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // SUB_BITS + 1 ..= MAX_BITS - 1
    let shift = msb - SUB_BITS;
    let octave = u64::from(shift - 1);
    let mantissa = (v >> shift) - SUB;
    (LINEAR + octave * SUB + mantissa) as usize
}

/// The highest value bucket `i` holds.
fn upper_of(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let octave = (i - LINEAR) / SUB;
    let mantissa = (i - LINEAR) % SUB;
    let shift = octave + 1;
    ((SUB + mantissa + 1) << shift) - 1
}

/// A histogram many tasks record into at once (relaxed atomics).
pub struct Hist {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Hist {
    pub fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros)].fetch_add(1, Relaxed);
        self.max.fetch_max(micros, Relaxed);
    }

    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        Summary {
            count: counts.iter().sum(),
            counts,
            max: self.max.load(Relaxed),
        }
    }
}

/// A histogram read out (and possibly merged from several).
#[derive(Clone, Debug)]
pub struct Summary {
    counts: Vec<u64>,
    pub count: u64,
    pub max: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

impl Summary {
    pub fn merge(&mut self, other: &Summary) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1) in µs, `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_of(i).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.quantile(q).map(ms)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| ms(self.max))
    }
}

pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Shards so that connections on different cores rarely touch the same
/// cache lines: connection `i` writes to shard `i % SHARDS`.
const SHARDS: usize = 32;

/// What the connections of one shard received.
#[repr(align(128))]
#[derive(Default)]
pub struct Shard {
    /// Publish-to-receive time of every `load` event, µs.
    pub latency: Hist,
    /// `load` events whose per-channel number was not above the last one.
    pub out_of_order: AtomicU64,
    /// Frames that were not Pusher JSON, or `load` events without our data.
    pub bad_frames: AtomicU64,
}

pub struct Deliveries {
    shards: Box<[Shard]>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Deliveries {
    pub fn shard(&self, connection: usize) -> &Shard {
        &self.shards[connection % SHARDS]
    }

    pub fn delivered(&self) -> u64 {
        self.shards.iter().map(|s| s.latency.count()).sum()
    }

    pub fn latency(&self) -> Summary {
        let mut all = Summary::default();
        for s in self.shards.iter() {
            all.merge(&s.latency.summary());
        }
        all
    }

    pub fn out_of_order(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.out_of_order.load(Relaxed))
            .sum()
    }

    pub fn bad_frames(&self) -> u64 {
        self.shards.iter().map(|s| s.bad_frames.load(Relaxed)).sum()
    }
}

/// Distinct error texts kept; later new ones are counted as "(other)".
const TALLY_KEYS: usize = 64;

/// Errors by kind and text, counted.
#[derive(Default)]
pub struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    pub fn add(&self, what: &str, detail: &str) {
        let Ok(mut map) = self.0.lock() else { return };
        let mut key = format!("{what}: {detail}");
        if !map.contains_key(&key) && map.len() >= TALLY_KEYS {
            key = format!("{what}: (other)");
        }
        *map.entry(key).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| (*m).clone()).unwrap_or_default()
    }
}

/// Everything one run measured; printed for people and as `RESULT {json}`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub label: Option<String>,
    pub target: String,
    pub connections: usize,
    pub channels: usize,
    pub rate: f64,
    pub batch: bool,
    pub payload_bytes: usize,
    pub duration_secs: u64,

    pub connected: usize,
    pub connect_failed: usize,
    pub connect_secs: f64,
    /// Connections (with `pusher:connection_established`) per second.
    pub connect_rate: f64,
    pub connect_p50_ms: Option<f64>,
    pub connect_p99_ms: Option<f64>,
    pub subscribed: usize,
    pub subscribe_failed: usize,
    pub subscribe_secs: f64,
    pub subscribe_p50_ms: Option<f64>,
    pub subscribe_p99_ms: Option<f64>,

    /// Events the schedule called for (rate × duration).
    pub publishes_due: u64,
    /// Events sent (one HTTP request each, or ten with `--batch`).
    pub publishes_attempted: u64,
    /// Events in requests answered 200.
    pub publishes_ok: u64,
    pub publishes_failed: u64,
    pub http_requests: u64,
    pub http_p50_ms: Option<f64>,
    pub http_p99_ms: Option<f64>,
    /// From the first publish to the last answer.
    pub publish_secs: f64,

    /// Σ over channels of (events published with 200) × (subscribers then).
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Delivered beyond what was expected (a publish that timed out here
    /// but went through).
    pub unexpected: u64,
    /// Deliveries during the publish phase per second of it.
    pub delivered_per_sec: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub out_of_order: u64,
    pub bad_frames: u64,
    pub open_at_start: u64,
    pub open_at_end: u64,

    pub server_pid: Option<u32>,
    pub rss_before_kib: Option<u64>,
    pub rss_idle_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// (idle − before) / connections held, KiB.
    pub rss_per_conn_kib: Option<f64>,
    pub tool_rss_kib: Option<u64>,

    pub errors: BTreeMap<String, u64>,
    /// Why the run stopped early (no connection could be opened).
    pub aborted: Option<String>,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"))
}

fn opt_kib(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v} KiB"))
}

impl Report {
    pub fn print(&self) {
        println!();
        println!(
            "== hubload {}: {} connections over {} channels, {} publishes/s{}, {} B payload, {} s",
            self.target,
            self.connections,
            self.channels,
            self.rate,
            if self.batch { " (batched by 10)" } else { "" },
            self.payload_bytes,
            self.duration_secs
        );
        println!(
            "connect     {} ok, {} failed in {:.2} s = {:.0} conn/s (p50 {}, p99 {})",
            self.connected,
            self.connect_failed,
            self.connect_secs,
            self.connect_rate,
            opt_ms(self.connect_p50_ms),
            opt_ms(self.connect_p99_ms)
        );
        println!(
            "subscribe   {} ok, {} failed in {:.2} s (p50 {}, p99 {})",
            self.subscribed,
            self.subscribe_failed,
            self.subscribe_secs,
            opt_ms(self.subscribe_p50_ms),
            opt_ms(self.subscribe_p99_ms)
        );
        if self.rate > 0.0 {
            println!(
                "publish     {} due, {} attempted, {} ok (HTTP 200), {} failed; {} requests, HTTP p50 {}, p99 {}",
                self.publishes_due,
                self.publishes_attempted,
                self.publishes_ok,
                self.publishes_failed,
                self.http_requests,
                opt_ms(self.http_p50_ms),
                opt_ms(self.http_p99_ms)
            );
            let lost_pct = if self.expected > 0 {
                self.lost as f64 * 100.0 / self.expected as f64
            } else {
                0.0
            };
            println!(
                "delivery    expected {}, delivered {}, lost {} ({lost_pct:.3} %), unexpected {}; {:.0} msg/s over {:.2} s",
                self.expected,
                self.delivered,
                self.lost,
                self.unexpected,
                self.delivered_per_sec,
                self.publish_secs
            );
            println!(
                "latency     p50 {}, p99 {}, max {}",
                opt_ms(self.latency_p50_ms),
                opt_ms(self.latency_p99_ms),
                opt_ms(self.latency_max_ms)
            );
        }
        println!(
            "connections {} open when publishing began, {} at the end; {} out of order, {} bad frames",
            self.open_at_start, self.open_at_end, self.out_of_order, self.bad_frames
        );
        if let Some(pid) = self.server_pid {
            println!(
                "server RSS  (pid {pid}) before {}, idle {}, end {}; per connection {}",
                opt_kib(self.rss_before_kib),
                opt_kib(self.rss_idle_kib),
                opt_kib(self.rss_end_kib),
                self.rss_per_conn_kib
                    .map_or_else(|| "-".to_string(), |v| format!("{v:.2} KiB"))
            );
        }
        println!("hubload RSS {}", opt_kib(self.tool_rss_kib));
        if !self.errors.is_empty() {
            let mut errors: Vec<(&String, &u64)> = self.errors.iter().collect();
            errors.sort_by(|a, b| b.1.cmp(a.1));
            println!("errors:");
            for (what, count) in errors {
                println!("  {count:>8} × {what}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_hold_their_values() {
        let mut last = 0;
        for v in (0..5_000u64).chain([1 << 20, (1 << 30) + 12345, MAX_VALUE]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v}");
            assert!(b >= last, "{v}");
            last = b;
            assert!(
                upper_of(b) >= v,
                "{v} above its bucket's top {}",
                upper_of(b)
            );
            if b > 0 {
                assert!(upper_of(b - 1) < v, "{v} also fits bucket {}", b - 1);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let h = Hist::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let s = h.summary();
        let p50 = s.quantile(0.5).unwrap_or(0) as f64;
        let p99 = s.quantile(0.99).unwrap_or(0) as f64;
        assert!((p50 / 5_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 9_900.0 - 1.0).abs() < 0.02, "{p99}");
        assert_eq!(s.quantile(1.0), Some(10_000));
        assert_eq!(Summary::default().quantile(0.5), None);
    }
}
