//! The signed HTTP publisher: `POST /apps/{id}/events` (or
//! `/batch_events`, ten events a request) signed as Pusher signs, sent by
//! a pool of workers on kept-alive connections, on a token schedule of
//! `rate` events per second, round robin over the channels.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Serialize;
use sha2::Sha256;
use tokio::{
    sync::{mpsc, Mutex},
    time::{Instant, MissedTickBehavior},
};

use crate::{
    client::LOAD_EVENT,
    stats::{now_micros, now_secs, Hist, Tally},
};

/// Events per `/batch_events` request (Pusher's limit).
pub const BATCH: u64 = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its duration the schedule may run when the server (or
/// hubload) cannot keep up; what is still due then is not sent.
const LAG_GRACE: Duration = Duration::from_secs(5);

/// What the publisher counted.
#[derive(Default)]
pub struct Counts {
    pub events_attempted: AtomicU64,
    pub events_ok: AtomicU64,
    pub events_failed: AtomicU64,
    pub requests: AtomicU64,
    pub request_time: Hist,
    pub errors: Tally,
}

pub struct Publisher {
    client: reqwest::Client,
    /// `http://host:port`
    base: String,
    events_path: String,
    batch_path: String,
    key: String,
    mac: Hmac<Sha256>,
    channels: Vec<String>,
    batch: bool,
    payload_bytes: usize,
    padding: String,
    /// Events answered 200, per channel.
    per_channel_ok: Box<[AtomicU64]>,
    pub counts: Counts,
}

pub struct Settings<'a> {
    pub host: &'a str,
    pub port: u16,
    pub app_id: &'a str,
    pub key: &'a str,
    pub secret: &'a str,
    pub channels: Vec<String>,
    pub batch: bool,
    pub payload_bytes: usize,
    pub workers: usize,
}

/// `first .. first + count` of the global event sequence: event `i` goes
/// to channel `i % C` as that channel's message number `i / C`.
#[derive(Clone, Copy, Debug)]
struct Job {
    first: u64,
    count: u64,
}

#[derive(Serialize)]
struct OneEvent<'a> {
    name: &'a str,
    channels: [&'a str; 1],
    data: &'a str,
}

#[derive(Serialize)]
struct BatchItem<'a> {
    name: &'a str,
    channel: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    batch: Vec<BatchItem<'a>>,
}

/// How the schedule went.
#[derive(Debug, Default)]
pub struct Schedule {
    /// Events rate × duration called for.
    pub due: u64,
    /// Events handed to the workers.
    pub queued: u64,
    /// The schedule ran past its duration (the publisher fell behind).
    pub lagged: Duration,
}

impl Publisher {
    pub fn new(s: Settings<'_>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(s.workers.max(1))
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let mac = Hmac::<Sha256>::new_from_slice(s.secret.as_bytes())
            .map_err(|e| format!("the secret as an HMAC key: {e}"))?;
        let channels = s.channels.len();
        Ok(Publisher {
            client,
            base: format!("http://{}:{}", s.host, s.port),
            events_path: format!("/apps/{}/events", s.app_id),
            batch_path: format!("/apps/{}/batch_events", s.app_id),
            key: s.key.to_string(),
            mac,
            channels: s.channels,
            batch: s.batch,
            payload_bytes: s.payload_bytes,
            padding: "x".repeat(s.payload_bytes),
            per_channel_ok: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            counts: Counts::default(),
        })
    }

    pub fn per_channel_ok(&self) -> Vec<u64> {
        self.per_channel_ok
            .iter()
            .map(|c| c.load(Relaxed))
            .collect()
    }

    /// The event's `data`: `{"t":<µs>,"n":<number>,"p":"xx…"}`, padded to
    /// `payload_bytes` when that is longer.
    fn data(&self, sent_us: u64, n: u64) -> String {
        let mut s = format!("{{\"t\":{sent_us},\"n\":{n},\"p\":\"");
        let pad = self.payload_bytes.saturating_sub(s.len() + 2);
        s.push_str(&self.padding[..pad.min(self.padding.len())]);
        s.push_str("\"}");
        s
    }

    fn body(&self, job: Job, sent_us: u64) -> Result<String, serde_json::Error> {
        let c = self.channels.len() as u64;
        if !self.batch {
            let data = self.data(sent_us, job.first / c);
            let channel = self.channels[(job.first % c) as usize].as_str();
            return serde_json::to_string(&OneEvent {
                name: LOAD_EVENT,
                channels: [channel],
                data: &data,
            });
        }
        let events: Vec<(usize, String)> = (job.first..job.first + job.count)
            .map(|i| ((i % c) as usize, self.data(sent_us, i / c)))
            .collect();
        serde_json::to_string(&BatchBody {
            batch: events
                .iter()
                .map(|(k, data)| BatchItem {
                    name: LOAD_EVENT,
                    channel: &self.channels[*k],
                    data,
                })
                .collect(),
        })
    }

    /// `{path}?auth_key=…&auth_timestamp=…&auth_version=1.0&body_md5=…&auth_signature=…`
    fn signed_url(&self, path: &str, body: &str) -> String {
        let body_md5 = hex::encode(Md5::digest(body.as_bytes()));
        let query = query(&self.key, now_secs(), &body_md5);
        let signature = sign(&self.mac, &format!("POST\n{path}\n{query}"));
        format!("{}{path}?{query}&auth_signature={signature}", self.base)
    }

    async fn send(&self, job: Job) {
        let sent_us = now_micros();
        let body = match self.body(job, sent_us) {
            Ok(b) => b,
            Err(e) => {
                self.counts.errors.add("publish", &format!("encoding: {e}"));
                self.counts.events_failed.fetch_add(job.count, Relaxed);
                return;
            }
        };
        let path = if self.batch {
            &self.batch_path
        } else {
            &self.events_path
        };
        let url = self.signed_url(path, &body);
        self.counts.events_attempted.fetch_add(job.count, Relaxed);
        self.counts.requests.fetch_add(1, Relaxed);
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) => {
                let status = response.status();
                // Read the body to the end so the connection is reused.
                let answer = response.bytes().await;
                if status == reqwest::StatusCode::OK && answer.is_ok() {
                    None
                } else {
                    let text = answer
                        .map(|b| {
                            String::from_utf8_lossy(&b)
                                .chars()
                                .take(120)
                                .collect::<String>()
                        })
                        .unwrap_or_default();
                    Some(format!("HTTP {}: {text}", status.as_u16()))
                }
            }
            Err(e) => Some(describe(e)),
        };
        self.counts.request_time.record_duration(started.elapsed());
        match failure {
            None => {
                self.counts.events_ok.fetch_add(job.count, Relaxed);
                let c = self.channels.len() as u64;
                for i in job.first..job.first + job.count {
                    self.per_channel_ok[(i % c) as usize].fetch_add(1, Relaxed);
                }
            }
            Some(why) => {
                self.counts.events_failed.fetch_add(job.count, Relaxed);
                self.counts.errors.add("publish", &why);
            }
        }
    }
}

/// The query string, its parameters in sorted order (as signed).
fn query(key: &str, timestamp: u64, body_md5: &str) -> String {
    format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}")
}

/// hex(HMAC-SHA256(secret, text)).
fn sign(mac: &Hmac<Sha256>, text: &str) -> String {
    let mut mac = mac.clone();
    Mac::update(&mut mac, text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A reqwest error without its URL (each one differs by its signature).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        match s.downcast_ref::<std::io::Error>() {
            Some(io) => text.push_str(&format!(": {}", crate::client::describe_io(io))),
            None => text.push_str(&format!(": {s}")),
        }
        source = std::error::Error::source(s);
    }
    text
}

/// Publishes `rate` events per second for `duration` with `workers`
/// requests in flight at most; returns once every request has been
/// answered (or has failed).
pub async fn run(
    publisher: Arc<Publisher>,
    rate: f64,
    duration: Duration,
    workers: usize,
) -> Schedule {
    let workers = workers.max(1);
    let per_request = if publisher.batch { BATCH } else { 1 };
    let (tx, rx) = mpsc::channel::<Job>(workers * 4);
    let rx = Arc::new(Mutex::new(rx));
    let pool: Vec<_> = (0..workers)
        .map(|_| {
            let publisher = publisher.clone();
            let rx = rx.clone();
            tokio::spawn(async move {
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { break };
                    publisher.send(job).await;
                }
            })
        })
        .collect();

    let due = (duration.as_secs_f64() * rate).floor() as u64;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut queued = 0u64;
    'schedule: while queued < due {
        tick.tick().await;
        let now_due = ((start.elapsed().as_secs_f64() * rate).floor() as u64).min(due);
        // Whole requests only, but the last may be short.
        while queued < now_due && (now_due - queued >= per_request || now_due == due) {
            let count = per_request.min(now_due - queued);
            if tx
                .send(Job {
                    first: queued,
                    count,
                })
                .await
                .is_err()
            {
                break 'schedule;
            }
            queued += count;
            if start.elapsed() > duration + LAG_GRACE {
                break 'schedule;
            }
        }
        if start.elapsed() > duration + LAG_GRACE {
            break;
        }
    }
    let lagged = start.elapsed().saturating_sub(duration);
    drop(tx);
    for worker in pool {
        let _ = worker.await;
    }
    Schedule {
        due,
        queued,
        lagged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher's worked example (HTTP API reference, "Worked authentication
    /// example"), as server/src/hub/api.rs checks it.
    #[test]
    fn signs_as_pusher_does() {
        let mac = Hmac::<Sha256>::new_from_slice(b"7ad3773142a6692b25b8").expect("key");
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let body_md5 = hex::encode(Md5::digest(body.as_bytes()));
        assert_eq!(body_md5, "ec365a775a4cd0599faeb73354201b6f");
        let q = query("278d425bdf160c739803", 1353088179, &body_md5);
        assert_eq!(
            sign(&mac, &format!("POST\n/apps/3/events\n{q}")),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    fn publisher(batch: bool, payload_bytes: usize) -> Publisher {
        Publisher::new(Settings {
            host: "127.0.0.1",
            port: 1,
            app_id: "1",
            key: "k",
            secret: "s",
            channels: (0..3).map(|k| format!("load-{k}")).collect(),
            batch,
            payload_bytes,
            workers: 1,
        })
        .expect("publisher")
    }

    #[test]
    fn data_is_padded_to_the_payload_size() {
        let p = publisher(false, 100);
        let d = p.data(1_700_000_000_000_000, 7);
        assert_eq!(d.len(), 100);
        let v: serde_json::Value = serde_json::from_str(&d).expect("json");
        assert_eq!(v["t"], 1_700_000_000_000_000u64);
        assert_eq!(v["n"], 7);
        // Smaller than the fixed fields: no padding, still JSON.
        let small = publisher(false, 0).data(1, 2);
        assert_eq!(small, r#"{"t":1,"n":2,"p":""}"#);
    }

    #[test]
    fn bodies_go_round_robin() {
        let one: serde_json::Value = serde_json::from_str(
            &publisher(false, 0)
                .body(Job { first: 4, count: 1 }, 9)
                .expect("body"),
        )
        .expect("json");
        assert_eq!(one["name"], "load");
        assert_eq!(one["channels"][0], "load-1");
        assert_eq!(one["data"], r#"{"t":9,"n":1,"p":""}"#);
        let batch: serde_json::Value = serde_json::from_str(
            &publisher(true, 0)
                .body(Job { first: 2, count: 3 }, 9)
                .expect("body"),
        )
        .expect("json");
        let channels: Vec<&str> = batch["batch"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["channel"].as_str())
            .collect();
        assert_eq!(channels, ["load-2", "load-0", "load-1"]);
    }
}
