//! One WebSocket connection in Pusher protocol 7: the handshake, pings,
//! subscriptions (a private channel's signature checked here, a Lockstep
//! log channel handed to the registry), and the frames queued for it,
//! written in batches.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use lockstep_core::eventstore::channels::{Channel, PresenceChannel};
use lockstep_wire::EDITING_MARK;
use tokio::{sync::mpsc, time::Instant};

use super::{
    protocol::{self, code, Inbound, Subscribe},
    registry::{Member, Out, SocketId},
    Hub,
};

/// How long one batch of frames may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one upgraded connection to its end.
pub async fn serve(socket: WebSocket, hub: Hub) {
    let socket_id: SocketId = protocol::new_socket_id().into();
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(hub.limits.queue);
    let (kill_tx, mut kill) = tokio::sync::oneshot::channel::<(u16, &'static str)>();
    hub.registry
        .join(socket_id.clone(), out_tx.clone(), kill_tx);
    // Leaves the registry however this task ends (a panic included).
    let _member = Membership(hub.registry.clone(), socket_id.clone());
    metrics::gauge!("lockstep_hub_connections").increment(1.0);
    let hello = Message::Text(
        protocol::connection_established(&socket_id, hub.limits.activity_timeout_secs.max(1))
            .into(),
    );
    let mut open = sink.send(hello).await.is_ok();
    // A client pings after `activity_timeout` of silence; one silent for
    // that plus the time it has to answer is pinged by the hub, and closed
    // (4201) when that ping is not answered in the same time.
    let activity = Duration::from_secs(hub.limits.activity_timeout_secs.max(1));
    let pong_wait = activity.min(Duration::from_secs(30));
    let silence = activity + pong_wait;
    let mut heard = Instant::now();
    let mut pinged = false;
    let mut subscribed = std::collections::HashSet::new();
    let mut rate = Rate::new(hub.limits.rate_limit, hub.limits.rate_window);
    // Subscribes have a budget of their own: a client (re)subscribing all
    // its channels at once after a reconnect is not throttled by the
    // message rate, yet a subscribe loop is.
    let subscribe_budget = match hub.limits.rate_limit {
        0 => 0,
        _ => (hub.limits.max_channels as u32)
            .saturating_mul(2)
            .max(hub.limits.rate_limit),
    };
    let mut subscribes = Rate::new(subscribe_budget, hub.limits.rate_window);
    let mut closing = hub.closing();
    // Made once, not per loop: every delivery wakes this loop, and a fresh
    // timer or watch waiter per wake-up is a lock on state every
    // connection shares (measured: docs/benchmarks.md, hubload).
    let closed = closed(&mut closing);
    tokio::pin!(closed);
    let idle = tokio::time::sleep_until(heard + silence);
    tokio::pin!(idle);
    let bytes_out = metrics::counter!("lockstep_hub_bytes_out_total");
    let messages_in = metrics::counter!("lockstep_hub_messages_in_total");
    while open {
        let deadline = if pinged {
            heard + silence + pong_wait
        } else {
            heard + silence
        };
        if idle.deadline() != deadline {
            idle.as_mut().reset(deadline);
        }
        tokio::select! {
            // Deliveries first: most wake-ups are one, and then the read
            // side is not polled for nothing.
            biased;
            queued = out_rx.recv() => {
                let Some(first) = queued else { break };
                // Everything queued (up to 256 frames) goes in one write;
                // a peer that stops reading must not park this task.
                let mut bytes = 0u64;
                let written = tokio::time::timeout(WRITE_TIMEOUT, async {
                    let mut next = Some(first);
                    let mut fed = 0;
                    while let Some(out) = next.take() {
                        match out {
                            Out::Frame(f) => {
                                bytes += f.len() as u64;
                                sink.feed(Message::Text(f)).await?;
                            }
                            Out::Refused(channel, f) => {
                                subscribed.remove(&channel);
                                bytes += f.len() as u64;
                                sink.feed(Message::Text(f)).await?;
                            }
                            Out::Close(code, reason) => {
                                sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await?;
                                return Ok::<bool, axum::Error>(false);
                            }
                        }
                        fed += 1;
                        if fed < 256 {
                            next = out_rx.try_recv().ok();
                        }
                    }
                    sink.flush().await?;
                    Ok(true)
                })
                .await;
                bytes_out.increment(bytes);
                open = matches!(written, Ok(Ok(true)));
            }
            inbound = stream.next() => {
                let Some(Ok(message)) = inbound else { break };
                heard = Instant::now();
                pinged = false;
                let text = match message {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    // Control frames count as activity; binary is not Pusher.
                    _ => continue,
                };
                messages_in.increment(1);
                if text.len() > hub.limits.max_payload {
                    reject(&out_tx, code::REJECTED, "message over the size limit", "hub_oversize");
                    continue;
                }
                let frame: Inbound = match serde_json::from_str(&text) {
                    Ok(f) => f,
                    Err(_) => {
                        reject(&out_tx, code::REJECTED, "invalid message format", "hub_bad_frame");
                        continue;
                    }
                };
                // Pings answer whatever the rate; subscribes count against
                // their own budget (a refused one gets its channel's
                // `subscription_error`, so Echo's `.error()` fires);
                // everything else against the message rate.
                match frame.event.as_str() {
                    "pusher:ping" | "pusher:pong" => {}
                    "pusher:subscribe" | "pusher:unsubscribe" => {
                        if !subscribes.admit(Instant::now()) {
                            crate::metrics::count_rejection("hub_subscribe_rate_limited");
                            let channel = frame.data().get("channel").and_then(|c| c.as_str()).unwrap_or("").chars().take(200).collect::<String>();
                            send(&out_tx, protocol::subscription_error(&channel, "LimitReached", "too many subscribes; slow down", 4301));
                            continue;
                        }
                    }
                    _ => {
                        if !rate.admit(Instant::now()) {
                            reject(&out_tx, code::REJECTED, "too many messages; slow down", "hub_rate_limited");
                            continue;
                        }
                    }
                }
                if frame.event.len() > hub.limits.max_event_name {
                    reject(&out_tx, code::REJECTED, "event name over the size limit", "hub_event_name");
                    continue;
                }
                handle(&hub, &socket_id, &out_tx, frame, &mut subscribed);
            }
            killed = &mut kill => {
                if let Ok((code, reason)) = killed {
                    let _ = tokio::time::timeout(
                        WRITE_TIMEOUT,
                        sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))),
                    )
                    .await;
                }
                break;
            }
            _ = &mut closed => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame { code: code::RECONNECT, reason: "Server shutting down".into() })))
                    .await;
                break;
            }
            _ = &mut idle => {
                if pinged {
                    let _ = sink.send(Message::Text(protocol::error(code::PONG_TIMEOUT, "Pong reply not received in time").into())).await;
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code: code::PONG_TIMEOUT, reason: "Pong reply not received in time".into() })))
                        .await;
                    break;
                }
                pinged = true;
                if sink.send(Message::Text(protocol::ping().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    metrics::gauge!("lockstep_hub_connections").decrement(1.0);
    tracing::debug!(socket_id = %socket_id, "hub connection closed");
}

/// Inbound messages admitted per window (a fixed window; 0 = no limit).
struct Rate {
    limit: u32,
    window: Duration,
    started: Instant,
    used: u32,
}

impl Rate {
    fn new(limit: u32, window: Duration) -> Self {
        Rate {
            limit,
            window,
            started: Instant::now(),
            used: 0,
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        if now.duration_since(self.started) >= self.window {
            self.started = now;
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
        self.used <= self.limit
    }
}

/// A socket's membership of the registry, ended on drop.
struct Membership(super::registry::Registry, SocketId);

impl Drop for Membership {
    fn drop(&mut self) {
        self.0.leave(self.1.clone());
    }
}

/// Completes once the hub is closing (the guard `wait_for` returns is
/// dropped here, so the connection's future stays `Send`).
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

fn reject(out: &mpsc::Sender<Out>, code: u16, message: &str, reason: &'static str) {
    crate::metrics::count_rejection(reason);
    let _ = out.try_send(Out::Frame(protocol::error(code, message).into()));
}

fn send(out: &mpsc::Sender<Out>, frame: String) {
    let _ = out.try_send(Out::Frame(Utf8Bytes::from(frame)));
}

fn handle(
    hub: &Hub,
    socket_id: &SocketId,
    out: &mpsc::Sender<Out>,
    frame: Inbound,
    subscribed: &mut std::collections::HashSet<String>,
) {
    match frame.event.as_str() {
        "pusher:ping" => send(out, protocol::pong()),
        "pusher:pong" => {}
        "pusher:subscribe" => {
            let Some(sub) = Subscribe::parse(&frame.data()) else {
                return reject(
                    out,
                    code::REJECTED,
                    "pusher:subscribe needs data.channel",
                    "hub_bad_frame",
                );
            };
            subscribe(hub, socket_id, out, sub, subscribed);
        }
        "pusher:unsubscribe" => {
            if let Some(channel) = frame.data().get("channel").and_then(|c| c.as_str()) {
                subscribed.remove(channel);
                hub.registry
                    .unsubscribe(socket_id.clone(), channel.to_string());
            }
        }
        e if e.starts_with("client-") => client_event(hub, socket_id, out, frame),
        _ => {}
    }
}

/// A `client-…` event: only when enabled, only on a private or presence
/// channel this connection joined (never a Lockstep log channel, which
/// only the core writes), to the other subscribers. The record editors'
/// `client-editing` on `presence-record.…` is always relayed: it is
/// Lockstep's own ("editing" marks), on a channel only admins allowed to
/// read the record join.
fn client_event(hub: &Hub, socket_id: &SocketId, out: &mpsc::Sender<Out>, frame: Inbound) {
    let editing_mark = frame.event == EDITING_MARK
        && frame.channel.as_deref().is_some_and(|c| {
            matches!(
                c.parse::<PresenceChannel>(),
                Ok(PresenceChannel::Record(..))
            )
        });
    let mut frame = frame;
    if editing_mark {
        // Only the mark itself: `{"editing": bool}`, nothing else rides on it.
        match frame
            .data
            .get("editing")
            .and_then(serde_json::Value::as_bool)
        {
            Some(editing) => frame.data = serde_json::json!({ "editing": editing }),
            None => {
                return reject(
                    out,
                    code::REJECTED,
                    "client-editing carries {\"editing\": true|false}",
                    "hub_bad_frame",
                )
            }
        }
    }
    if !hub.limits.client_events && !editing_mark {
        return reject(
            out,
            code::REJECTED,
            "client events are not enabled on this server",
            "hub_client_event_disabled",
        );
    }
    let Some(channel) = frame.channel else {
        return reject(
            out,
            code::REJECTED,
            "a client event needs a channel",
            "hub_bad_frame",
        );
    };
    if !(channel.starts_with("private-") || channel.starts_with("presence-")) {
        return reject(
            out,
            code::REJECTED,
            "client events only on private and presence channels",
            "hub_client_event_public",
        );
    }
    if channel.parse::<Channel>().is_ok() {
        return reject(
            out,
            code::REJECTED,
            "Lockstep's channels are written only by Lockstep",
            "hub_client_event_log_channel",
        );
    }
    // Whether it joined the channel is the registry's to say (it knows
    // which subscriptions succeeded).
    hub.registry
        .client_event(socket_id.clone(), channel, frame.event, frame.data);
}

/// A presence subscription's member, from its signed `channel_data`:
/// `user_id` (a string or a number, as Laravel sends it) and `user_info`.
fn member(channel_data: Option<&str>, max_info: usize) -> Option<Member> {
    let data: serde_json::Value = serde_json::from_str(channel_data?).ok()?;
    let user_id = match data.get("user_id")? {
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 128 => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let user_info = data
        .get("user_info")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    (user_info.to_string().len() <= max_info).then_some(Member { user_id, user_info })
}

fn subscribe(
    hub: &Hub,
    socket_id: &SocketId,
    out: &mpsc::Sender<Out>,
    sub: Subscribe,
    subscribed: &mut std::collections::HashSet<String>,
) {
    let name = sub.channel.as_str();
    if !protocol::valid_channel(name, hub.limits.max_channel_name) {
        crate::metrics::count_rejection("hub_bad_channel");
        return send(
            out,
            protocol::subscription_error(name, "InvalidChannel", "invalid channel name", 4009),
        );
    }
    if !subscribed.contains(name) && subscribed.len() >= hub.limits.max_channels {
        crate::metrics::count_rejection("hub_too_many_channels");
        return send(
            out,
            protocol::subscription_error(
                name,
                "LimitReached",
                "too many channels on this connection",
                4100,
            ),
        );
    }
    let signed = name.starts_with("private-") || name.starts_with("presence-");
    let log_channel = name.parse::<Channel>().ok();
    let lockstep_presence = name.parse::<PresenceChannel>().ok();
    let misspelt = log_channel.as_ref().is_some_and(|c| c.to_string() != name)
        || lockstep_presence
            .as_ref()
            .is_some_and(|c| c.to_string() != name);
    if misspelt {
        // Another spelling of a Lockstep channel (an uppercase id): its
        // envelopes carry the canonical name, which the client would not
        // recognise.
        crate::metrics::count_rejection("hub_bad_channel");
        return send(
            out,
            protocol::subscription_error(
                name,
                "InvalidChannel",
                "not the channel's canonical name",
                4009,
            ),
        );
    }
    if signed {
        let ok = sub.auth.as_deref().is_some_and(|auth| {
            hub.keys.verify_channel_auth(
                auth,
                socket_id,
                name,
                sub.channel_data.as_deref(),
                log_channel.is_some() || lockstep_presence.is_some(),
            )
        });
        if !ok {
            crate::metrics::count_rejection("hub_bad_signature");
            tracing::info!(socket_id = %socket_id, channel = %name, "subscription refused: bad signature");
            send(
                out,
                protocol::error(code::UNAUTHORIZED, "Invalid signature"),
            );
            return send(
                out,
                protocol::subscription_error(name, "AuthError", "invalid signature", 401),
            );
        }
    }
    match log_channel {
        // A Lockstep log channel: only with a signature by the server's own
        // key (the auth endpoint signs only what `channels::authorize`
        // allows; the app secret a Laravel app holds cannot).
        Some(channel) if signed => {
            // Subscribing again is harmless: the registry replaces the
            // subscription and answers `subscription_succeeded` again.
            subscribed.insert(name.to_string());
            metrics::counter!("lockstep_hub_subscriptions_total", "type" => "log").increment(1);
            hub.registry.subscribe(socket_id.clone(), channel, sub.seq);
        }
        // Presence (Lockstep's, signed by the auth endpoint, or an app's):
        // the member comes from the signed `channel_data`.
        _ if name.starts_with("presence-") => {
            let Some(member) = member(
                sub.channel_data.as_deref(),
                hub.limits.max_presence_member_size,
            ) else {
                crate::metrics::count_rejection("hub_bad_channel_data");
                return send(
                    out,
                    protocol::subscription_error(
                        name,
                        "AuthError",
                        "channel_data must carry user_id (and user_info under 1 KB)",
                        400,
                    ),
                );
            };
            subscribed.insert(name.to_string());
            metrics::counter!("lockstep_hub_subscriptions_total", "type" => "presence")
                .increment(1);
            hub.registry
                .subscribe_presence(socket_id.clone(), name.to_string(), member);
        }
        // Public channels, and another app's private ones (signed above):
        // what the HTTP API publishes to them.
        _ => {
            subscribed.insert(name.to_string());
            let kind = if signed { "private" } else { "public" };
            metrics::counter!("lockstep_hub_subscriptions_total", "type" => kind).increment(1);
            hub.registry
                .subscribe_ephemeral(socket_id.clone(), name.to_string());
        }
    }
}
