//! One Pusher connection: open `/app/{key}?protocol=7`, wait for
//! `pusher:connection_established`, subscribe to its public channel, then
//! time and count every `load` event (and answer `pusher:ping`) until the
//! process ends. Also what all connections share ([`Shared`]).

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};
use tokio_tungstenite::{
    tungstenite::{
        self,
        protocol::{CloseFrame, WebSocketConfig},
        Message, Utf8Bytes,
    },
    MaybeTlsStream, WebSocketStream,
};

use crate::stats::{now_micros, Deliveries, Hist, Shard, Tally};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// tungstenite allocates this much per connection up front (its default,
/// 128 KiB, would be 1.3 GB for 10,000 connections); our frames are small.
const READ_BUFFER: usize = 4 * 1024;
/// Opening (TCP, upgrade, `connection_established`) must finish within this.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// `pusher_internal:subscription_succeeded` must come within this.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(60);
const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;
/// The event name hubload publishes.
pub const LOAD_EVENT: &str = "load";

/// Where the run is; connections wait for `Subscribe` once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Connect,
    Subscribe,
}

/// What every connection shares.
pub struct Shared {
    pub url: String,
    /// `load-0` … `load-{C-1}`.
    pub channels: Vec<String>,
    /// Connects (and subscribes) in flight at once.
    pub gate: Semaphore,
    pub deliveries: Deliveries,
    pub errors: Tally,
    /// Live subscribers per channel.
    pub subscribers: Box<[AtomicU64]>,
    /// Subscribed connections still open.
    pub open: AtomicU64,
    pub connect_time: Hist,
    pub subscribe_time: Hist,
}

impl Shared {
    pub fn new(url: String, channels: usize, concurrency: usize) -> Self {
        Shared {
            url,
            channels: (0..channels).map(|k| format!("load-{k}")).collect(),
            gate: Semaphore::new(concurrency.max(1)),
            deliveries: Deliveries::default(),
            errors: Tally::default(),
            subscribers: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            open: AtomicU64::new(0),
            connect_time: Hist::default(),
            subscribe_time: Hist::default(),
        }
    }

    pub fn subscriber_counts(&self) -> Vec<u64> {
        self.subscribers.iter().map(|s| s.load(Relaxed)).collect()
    }
}

/// One connection, `id` (channel `load-{id % C}`). Sends `true`/`false`
/// on `steps` once connected (or failed), then once subscribed (or failed).
pub async fn run(
    id: usize,
    hub: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    steps: mpsc::UnboundedSender<bool>,
) {
    let channel = id % hub.channels.len();
    let opened = {
        let _slot = hub.gate.acquire().await;
        let started = Instant::now();
        // Boxed: the handshake's state is large and short-lived; the
        // task keeps only what the long receive loop needs.
        let opened = Box::pin(open(&hub.url)).await;
        if opened.is_ok() {
            hub.connect_time.record_duration(started.elapsed());
        }
        opened
    };
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            hub.errors.add("connect", &e);
            let _ = steps.send(false);
            return;
        }
    };
    let _ = steps.send(true);

    let go = phase.wait_for(|p| *p >= Phase::Subscribe).await.is_ok();
    drop(phase);
    if !go {
        return;
    }
    let subscribed = {
        let _slot = hub.gate.acquire().await;
        let started = Instant::now();
        let subscribed = Box::pin(subscribe(&mut ws, &hub.channels[channel])).await;
        if subscribed.is_ok() {
            hub.subscribe_time.record_duration(started.elapsed());
        }
        subscribed
    };
    if let Err(e) = subscribed {
        hub.errors.add("subscribe", &e);
        let _ = steps.send(false);
        return;
    }
    hub.subscribers[channel].fetch_add(1, Relaxed);
    hub.open.fetch_add(1, Relaxed);
    let _ = steps.send(true);
    drop(steps);

    let ended = receive(&mut ws, &hub, hub.deliveries.shard(id)).await;
    hub.subscribers[channel].fetch_sub(1, Relaxed);
    hub.open.fetch_sub(1, Relaxed);
    hub.errors.add("connection ended", &ended);
}

/// The envelope fields hubload reads (`data` is skipped, whatever it is).
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    /// Borrowed: our channel names need no JSON escapes.
    #[serde(default, borrow)]
    channel: Option<&'a str>,
}

/// What hubload publishes inside `data`: send time (µs since the Unix
/// epoch) and the per-channel message number (the padding is skipped).
#[derive(Deserialize)]
struct Payload {
    t: u64,
    n: u64,
}

/// `data` as Pusher sends it: a JSON string.
#[derive(Deserialize)]
struct LoadAsString<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// `data` as an object, should a server decode it.
#[derive(Deserialize)]
struct LoadAsObject {
    data: Payload,
}

fn load_payload(frame: &str) -> Option<Payload> {
    if let Ok(f) = serde_json::from_str::<LoadAsString<'_>>(frame) {
        return serde_json::from_str(&f.data).ok();
    }
    serde_json::from_str::<LoadAsObject>(frame)
        .ok()
        .map(|f| f.data)
}

fn pong() -> Message {
    Message::Text(Utf8Bytes::from_static(PONG))
}

async fn open(url: &str) -> Result<Ws, String> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _) = tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::connect_async_with_config(url, Some(config), true),
    )
    .await
    .map_err(|_| format!("no WebSocket within {} s", OPEN_TIMEOUT.as_secs()))?
    .map_err(|e| describe(&e))?;
    let text = next_text(&mut ws, deadline).await?;
    let head: Head<'_> = serde_json::from_str(text.as_str())
        .map_err(|_| "the first frame is not Pusher JSON".to_string())?;
    match head.event.as_ref() {
        "pusher:connection_established" => Ok(ws),
        "pusher:error" => Err(format!("pusher:error {}", excerpt(text.as_str()))),
        other => Err(format!(
            "the first frame is {other}, not pusher:connection_established"
        )),
    }
}

async fn subscribe(ws: &mut Ws, channel: &str) -> Result<(), String> {
    let frame = serde_json::json!({
        "event": "pusher:subscribe",
        "data": {"auth": "", "channel": channel},
    });
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| describe(&e))?;
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        let text = next_text(ws, deadline).await?;
        let head: Head<'_> = serde_json::from_str(text.as_str())
            .map_err(|_| "a frame that is not Pusher JSON".to_string())?;
        match head.event.as_ref() {
            "pusher_internal:subscription_succeeded" if head.channel == Some(channel) => {
                return Ok(())
            }
            "pusher:ping" => ws.send(pong()).await.map_err(|e| describe(&e))?,
            "pusher:error" => return Err(format!("pusher:error {}", excerpt(text.as_str()))),
            _ => {}
        }
    }
}

/// The next text frame, by `deadline`.
async fn next_text(ws: &mut Ws, deadline: Instant) -> Result<Utf8Bytes, String> {
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "timed out waiting for the server".to_string())?;
        match next {
            None => return Err("the server closed the connection".to_string()),
            Some(Err(e)) => return Err(describe(&e)),
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(frame))) => return Err(closed_by(frame.as_ref())),
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the connection ends; returns why it ended.
async fn receive(ws: &mut Ws, hub: &Shared, shard: &Shard) -> String {
    let mut last: Option<u64> = None;
    loop {
        let text = match ws.next().await {
            None => return "the server closed the connection".to_string(),
            Some(Err(e)) => return describe(&e),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => return closed_by(frame.as_ref()),
            Some(Ok(_)) => continue,
        };
        let Ok(head) = serde_json::from_str::<Head<'_>>(text.as_str()) else {
            shard.bad_frames.fetch_add(1, Relaxed);
            continue;
        };
        match head.event.as_ref() {
            LOAD_EVENT => match load_payload(text.as_str()) {
                Some(p) => {
                    shard.latency.record(now_micros().saturating_sub(p.t));
                    if last.is_some_and(|l| p.n <= l) {
                        shard.out_of_order.fetch_add(1, Relaxed);
                    }
                    last = Some(last.map_or(p.n, |l| l.max(p.n)));
                }
                None => {
                    shard.bad_frames.fetch_add(1, Relaxed);
                }
            },
            "pusher:ping" => {
                if let Err(e) = ws.send(pong()).await {
                    return describe(&e);
                }
            }
            "pusher:error" => hub
                .errors
                .add("pusher:error frame", &excerpt(text.as_str())),
            _ => {}
        }
    }
}

fn closed_by(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!(
            "closed by the server with {} {}",
            u16::from(f.code),
            f.reason.as_str()
        ),
        None => "closed by the server (no close code)".to_string(),
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(160).collect()
}

fn describe(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => describe_io(io),
        tungstenite::Error::Http(response) => format!(
            "HTTP {} instead of the WebSocket upgrade",
            response.status()
        ),
        other => other.to_string(),
    }
}

/// An I/O error, with what the usual suspects mean under load (Linux
/// errno numbers).
pub fn describe_io(io: &std::io::Error) -> String {
    let hint = match io.raw_os_error() {
        Some(24) => " [EMFILE: hubload is out of file descriptors; raise `ulimit -n`]",
        Some(23) => " [ENFILE: the system is out of file descriptors]",
        Some(99) => " [EADDRNOTAVAIL: out of local ports]",
        Some(104) => " [ECONNRESET: the server dropped the connection (its own fd limit?)]",
        Some(110) => " [ETIMEDOUT]",
        Some(111) => " [ECONNREFUSED: nothing listens there, or its backlog is full]",
        _ => "",
    };
    format!("{io}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_data_as_a_string_or_an_object() {
        let s = r#"{"event":"load","channel":"load-1","data":"{\"t\":123,\"n\":4,\"p\":\"xx\"}"}"#;
        let p = load_payload(s).expect("string data");
        assert_eq!((p.t, p.n), (123, 4));
        let o = r#"{"event":"load","channel":"load-1","data":{"t":5,"n":6,"p":""}}"#;
        let p = load_payload(o).expect("object data");
        assert_eq!((p.t, p.n), (5, 6));
        assert!(load_payload(r#"{"event":"load","data":"nope"}"#).is_none());
    }

    #[test]
    fn head_skips_data_of_any_shape() {
        let h: Head<'_> =
            serde_json::from_str(r#"{"event":"pusher:error","data":{"code":4001,"message":"x"}}"#)
                .expect("head");
        assert_eq!(h.event, "pusher:error");
        assert!(h.channel.is_none());
    }
}
