//! Pusher webhooks, so a Laravel app can react to presence and occupancy:
//! the registry's events (`channel_occupied`, `channel_vacated`,
//! `member_added`, `member_removed`, `client_event`) gathered for a moment
//! and batched as Pusher batches them (`{"time_ms", "events": […]}`),
//! stored through the outbox (`lockstep_core::webhooks`: they survive a
//! restart and are retried with backoff), and delivered signed:
//! `X-Pusher-Key`, `X-Pusher-Signature` = hex(HMAC-SHA256(secret, body)).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use lockstep_core::{now_ms, webhooks::WebhookSender, Services};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{registry::HubEvent, AppKeys};

/// How long events are gathered into one batch.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
const MAX_BATCH: usize = 100;

/// The HTTP side: one POST per batch and URL, signed with the app secret.
pub struct HttpSender {
    client: reqwest::Client,
    keys: Arc<AppKeys>,
}

impl HttpSender {
    pub fn new(keys: Arc<AppKeys>) -> Self {
        HttpSender {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            keys,
        }
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn deliver(&self, url: &str, body: &str) -> Result<(), String> {
        let res = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-pusher-key", &self.keys.key)
            .header("x-pusher-signature", self.keys.sign(body))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered HTTP {}", res.status().as_u16()))
        }
    }
}

/// One event as Pusher's webhook body names it.
pub fn event_json(event: &HubEvent) -> Value {
    match event {
        HubEvent::ChannelOccupied { channel } => {
            json!({"name": "channel_occupied", "channel": channel})
        }
        HubEvent::ChannelVacated { channel } => {
            json!({"name": "channel_vacated", "channel": channel})
        }
        HubEvent::MemberAdded { channel, user_id } => {
            json!({"name": "member_added", "channel": channel, "user_id": user_id})
        }
        HubEvent::MemberRemoved { channel, user_id } => {
            json!({"name": "member_removed", "channel": channel, "user_id": user_id})
        }
        HubEvent::ClientEvent {
            channel,
            event,
            data,
            socket_id,
            user_id,
        } => {
            let mut e = json!({"name": "client_event", "channel": channel, "event": event,
                               "data": data, "socket_id": socket_id});
            if let Some(user_id) = user_id {
                e["user_id"] = json!(user_id);
            }
            e
        }
    }
}

/// The batcher's handles: where events go, and how to store what is
/// gathering at once (at shutdown).
pub struct Batcher {
    pub events: mpsc::UnboundedSender<HubEvent>,
    flush: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
}

impl Batcher {
    /// Stores every event sent so far (without waiting for the batch
    /// window), then returns.
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.flush.send(done).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// Starts the batcher: what the registry reports is stored for `urls`
/// and the outbox workers woken.
pub fn start(services: Services, urls: Vec<String>) -> Batcher {
    let (tx, mut rx) = mpsc::unbounded_channel::<HubEvent>();
    let (flush_tx, mut flush_rx) = mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<()>>();
    tokio::spawn(async move {
        loop {
            let mut events = Vec::new();
            let mut ack = None;
            tokio::select! {
                first = rx.recv() => match first {
                    Some(e) => events.push(event_json(&e)),
                    None => return,
                },
                asked = flush_rx.recv() => match asked {
                    Some(a) => ack = Some(a),
                    None => return,
                },
            }
            if ack.is_none() {
                let window = tokio::time::sleep(BATCH_WINDOW);
                tokio::pin!(window);
                while events.len() < MAX_BATCH {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(e) => events.push(event_json(&e)),
                            None => break,
                        },
                        asked = flush_rx.recv() => {
                            ack = asked;
                            break;
                        }
                        _ = &mut window => break,
                    }
                }
            }
            if ack.is_some() {
                // Flushing: whatever is queued joins this batch now.
                while let Ok(e) = rx.try_recv() {
                    events.push(event_json(&e));
                }
            }
            if events.is_empty() {
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                continue;
            }
            let count = events.len();
            let now = now_ms();
            let body = json!({"time_ms": now, "events": events}).to_string();
            // The database is the way out: retried until it takes the
            // batch (a restart loses only what was still gathering).
            let mut delay = Duration::from_millis(100);
            loop {
                match lockstep_core::webhooks::enqueue(&services.db, &urls, &body, now).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "storing a webhook batch failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            metrics::counter!("lockstep_webhooks_events_total").increment(count as u64);
            services.wake.notify_one();
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    });
    Batcher {
        events: tx,
        flush: flush_tx,
    }
}
