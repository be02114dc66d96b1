//! The realtime client's engine in the browser: one WebSocket to the hub,
//! the polling loop that stands in for it, the per-channel cursors and
//! the listeners pages registered. Single-threaded (`Rc<RefCell<_>>`);
//! listeners are called with the state released, so they may follow or
//! leave channels themselves.

use std::{cell::RefCell, collections::HashMap, rc::Rc, time::Duration};

use leptos::prelude::*;
use lockstep_wire::{Envelope, Since};
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::{
    backoff::Backoff,
    client::{SOCKET_ID_HEADER, TAB_ID_HEADER},
    cursor::Cursors,
    frames::{self, AfterClose, Inbound},
    Delivery, PresenceEvent, Transport,
};

/// Polling period while the tab is visible, and while it is hidden.
const POLL_EVERY: Duration = Duration::from_secs(3);
const POLL_HIDDEN: Duration = Duration::from_secs(15);
/// A socket not established by then is given up (and retried).
const CONNECT_DEADLINE: Duration = Duration::from_secs(8);
/// How long after the client is made (during hydration) it connects.
const AFTER_HYDRATION: Duration = Duration::from_millis(500);
/// Consecutive connection attempts that never got established before
/// polling takes over (a socket that was up and dropped is not one: the
/// hub resumes it, gap-free, as soon as it is back).
const FAILURES_BEFORE_POLLING: u32 = 2;
/// How often the watchdog checks the socket is still heard from.
const WATCHDOG: Duration = Duration::from_secs(5);
/// How long after its last listener left a channel is unsubscribed (a
/// page that re-renders follows it again at once).
const LINGER: Duration = Duration::from_secs(2);

thread_local! {
    static SOCKET_ID: RefCell<Option<String>> = const { RefCell::new(None) };
    /// This tab's name for the polling path (`X-Tab-ID`), made up once.
    static TAB_ID: String = format!(
        "tab-{:012x}{:012x}",
        (js_sys::Math::random() * 2f64.powi(48)) as u64,
        (js_sys::Math::random() * 2f64.powi(48)) as u64
    );
}

/// This tab's id (`X-Tab-ID`): sent with every server function and poll,
/// so a tab that polls is not returned the echo of its own edits.
pub fn tab_id() -> String {
    TAB_ID.with(String::clone)
}

/// This tab's socket id while the socket is up.
pub fn socket_id() -> Option<String> {
    SOCKET_ID.with(|s| s.borrow().clone())
}

fn set_socket_id(id: Option<String>) {
    SOCKET_ID.with(|s| *s.borrow_mut() = id);
}

pub type Shared = Rc<RefCell<Driver>>;
type Listen = Rc<dyn Fn(&Delivery)>;
type Attend = Rc<dyn Fn(&PresenceEvent)>;

struct Socket {
    ws: WebSocket,
    generation: u64,
    established: bool,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Detaches the handlers, so a socket being replaced calls nothing.
    fn detach(&self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

pub struct Driver {
    key: String,
    transport: RwSignal<Transport>,
    socket: Option<Socket>,
    /// A socket that just closed: kept until the next connect, because its
    /// close handler may still be running when it is replaced.
    closed: Option<Socket>,
    generation: u64,
    socket_id: Option<String>,
    cursors: Cursors,
    listeners: HashMap<u64, (String, Listen)>,
    /// Presence channels joined, and who hears of their members.
    attendees: HashMap<u64, (String, Attend)>,
    next_id: u64,
    backoff: Backoff,
    /// Attempts in a row that never reached `connection_established`.
    failed_attempts: u32,
    polling: bool,
    poll_running: bool,
    last_heard: f64,
    activity: Duration,
    pinged: bool,
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The Pusher app key, from the page's `<meta name="lockstep-pusher-key">`.
fn app_key() -> Option<String> {
    document()
        .query_selector("meta[name=lockstep-pusher-key]")
        .ok()
        .flatten()
        .and_then(|m| m.get_attribute("content"))
        .filter(|k| !k.is_empty())
}

fn socket_url(key: &str) -> Option<String> {
    let location = window().location();
    let scheme = match location.protocol().ok()?.as_str() {
        "https:" => "wss",
        _ => "ws",
    };
    let host = location.host().ok()?;
    Some(format!(
        "{scheme}://{host}/app/{key}?protocol=7&client=lockstep-rs&version=1.0&flash=false"
    ))
}

fn hidden() -> bool {
    document().hidden()
}

fn online() -> bool {
    window().navigator().on_line()
}

/// Starts the client: connects, and watches the socket.
pub fn start(transport: RwSignal<Transport>) -> Shared {
    let shared = Rc::new(RefCell::new(Driver {
        key: app_key().unwrap_or_default(),
        transport,
        socket: None,
        closed: None,
        generation: 0,
        socket_id: None,
        cursors: Cursors::default(),
        listeners: HashMap::new(),
        attendees: HashMap::new(),
        next_id: 0,
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        failed_attempts: 0,
        polling: false,
        poll_running: false,
        last_heard: now_ms(),
        activity: Duration::from_secs(120),
        pinged: false,
    }));
    // Not during hydration: a socket event that re-renders a region the
    // hydration has not reached yet (a refetch, a toast) breaks it. The
    // page's data carries its seqs, so connecting a moment later misses
    // nothing.
    {
        let shared = shared.clone();
        set_timeout(move || connect(&shared), AFTER_HYDRATION);
    }
    watchdog(&shared);
    on_network_change(&shared);
    shared
}

/// Follows `channel` after `from_seq`; returns the listener's id.
pub fn listen(shared: &Shared, channel: &str, from_seq: i64, f: Listen) -> u64 {
    let (id, new_channel, live, polling) = {
        let mut d = shared.borrow_mut();
        let new_channel = d.cursors.get(channel).is_none();
        d.cursors.follow(channel, from_seq);
        d.next_id += 1;
        let id = d.next_id;
        d.listeners.insert(id, (channel.to_string(), f));
        let live = d.socket.as_ref().is_some_and(|s| s.established);
        (id, new_channel, live, d.polling)
    };
    if new_channel && live {
        subscribe(shared, channel.to_string());
    }
    if new_channel && polling {
        poll_soon(shared);
    }
    id
}

/// The last seq delivered on `channel`, if it is followed.
pub fn cursor(shared: &Shared, channel: &str) -> Option<i64> {
    shared.borrow().cursors.get(channel)
}

/// Joins the presence channel `channel` (while the socket is up; again
/// after each reconnect); `f` hears of its members. Returns the id.
pub fn join(shared: &Shared, channel: &str, f: Attend) -> u64 {
    let (id, new_channel, live) = {
        let mut d = shared.borrow_mut();
        let new_channel = !d.attendees.values().any(|(c, _)| c == channel);
        d.next_id += 1;
        let id = d.next_id;
        d.attendees.insert(id, (channel.to_string(), f));
        (
            id,
            new_channel,
            d.socket.as_ref().is_some_and(|s| s.established),
        )
    };
    if new_channel && live {
        subscribe(shared, channel.to_string());
    }
    id
}

/// Leaves a presence channel joined with [`join`] (a moment later, unless
/// someone joins it again).
pub fn leave(shared: &Shared, id: u64) {
    let Some((channel, _)) = shared.borrow_mut().attendees.remove(&id) else {
        return;
    };
    let shared = shared.clone();
    set_timeout(
        move || {
            let d = shared.borrow();
            if d.attendees.values().any(|(c, _)| *c == channel) {
                return;
            }
            if let Some(s) = d.socket.as_ref().filter(|s| s.established) {
                let _ = s.ws.send_with_str(&frames::unsubscribe(&channel));
            }
        },
        LINGER,
    );
}

/// Sends a client event to the other members of a joined presence channel
/// (nothing while the socket is down).
pub fn whisper(shared: &Shared, channel: &str, event: &str, data: &serde_json::Value) {
    if let Some(s) = shared.borrow().socket.as_ref().filter(|s| s.established) {
        let _ = s.ws.send_with_str(&frames::whisper(channel, event, data));
    }
}

fn attend(shared: &Shared, channel: Option<&str>, event: &PresenceEvent) {
    let attendees: Vec<Attend> = shared
        .borrow()
        .attendees
        .values()
        .filter(|(c, _)| channel.is_none_or(|ch| ch == c))
        .map(|(_, f)| f.clone())
        .collect();
    for f in attendees {
        f(event);
    }
}

/// Stops a listener; its channel is left a moment after its last one.
pub fn unlisten(shared: &Shared, id: u64) {
    let Some((channel, _)) = shared.borrow_mut().listeners.remove(&id) else {
        return;
    };
    let shared = shared.clone();
    set_timeout(
        move || {
            let mut d = shared.borrow_mut();
            if d.listeners.values().any(|(c, _)| *c == channel) {
                return;
            }
            d.cursors.forget(&channel);
            if let Some(s) = d.socket.as_ref().filter(|s| s.established) {
                let _ = s.ws.send_with_str(&frames::unsubscribe(&channel));
            }
        },
        LINGER,
    );
}

fn connect(shared: &Shared) {
    let mut d = shared.borrow_mut();
    if let Some(old) = d.socket.take() {
        old.detach();
        let _ = old.ws.close();
    }
    if let Some(old) = d.closed.take() {
        old.detach();
    }
    d.generation += 1;
    let generation = d.generation;
    let Some(url) = socket_url(&d.key).filter(|_| !d.key.is_empty()) else {
        drop(d);
        return failed(shared, generation, AfterClose::GiveUp);
    };
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(_) => {
            drop(d);
            return failed(shared, generation, AfterClose::BackOff);
        }
    };
    let on_message = {
        let shared = shared.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                on_frame(&shared, generation, &text);
            }
        })
    };
    let on_close = {
        let shared = shared.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            failed(&shared, generation, frames::after_close(e.code()));
        })
    };
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    d.socket = Some(Socket {
        ws,
        generation,
        established: false,
        _on_message: on_message,
        _on_close: on_close,
    });
    drop(d);
    // A socket that hangs before `connection_established` (a proxy that
    // swallows the upgrade) counts as a failure.
    let shared = shared.clone();
    set_timeout(
        move || {
            let stuck = {
                let d = shared.borrow();
                d.socket
                    .as_ref()
                    .is_some_and(|s| s.generation == generation && !s.established)
            };
            if stuck {
                failed(&shared, generation, AfterClose::BackOff);
            }
        },
        CONNECT_DEADLINE,
    );
}

/// The socket of `generation` closed or could not open: schedule the next
/// attempt, and poll meanwhile once it keeps failing.
fn failed(shared: &Shared, generation: u64, after: AfterClose) {
    let mut d = shared.borrow_mut();
    if d.generation != generation {
        return;
    }
    let was_up = d.socket.as_ref().is_some_and(|s| s.established);
    d.failed_attempts = if was_up { 0 } else { d.failed_attempts + 1 };
    if let Some(old) = d.socket.take() {
        old.detach();
        let _ = old.ws.close();
        d.closed = Some(old);
    }
    d.socket_id = None;
    set_socket_id(None);
    let members_lost = was_up && !d.attendees.is_empty();
    let jitter = js_sys::Math::random();
    let delay = match after {
        AfterClose::Now => {
            d.backoff.reset();
            Duration::from_millis((jitter * 250.0) as u64)
        }
        AfterClose::BackOff => d.backoff.next(jitter),
        AfterClose::GiveUp => Duration::from_secs(60),
    };
    let poll = after == AfterClose::GiveUp || d.failed_attempts >= FAILURES_BEFORE_POLLING;
    if !poll && !d.polling {
        d.transport.set(if online() {
            Transport::Reconnecting
        } else {
            Transport::Offline
        });
    }
    drop(d);
    if members_lost {
        attend(shared, None, &PresenceEvent::Lost);
    }
    if poll {
        start_polling(shared);
    }
    let shared = shared.clone();
    set_timeout(
        move || {
            // Only if nothing else reconnected meanwhile.
            if shared.borrow().generation == generation {
                connect(&shared);
            }
        },
        delay,
    );
}

fn send(shared: &Shared, text: &str) {
    if let Some(s) = shared.borrow().socket.as_ref() {
        let _ = s.ws.send_with_str(text);
    }
}

fn on_frame(shared: &Shared, generation: u64, text: &str) {
    {
        let mut d = shared.borrow_mut();
        if d.generation != generation {
            return;
        }
        d.last_heard = now_ms();
        d.pinged = false;
    }
    let Some(frame) = frames::parse(text) else {
        leptos::logging::warn!("realtime: a frame that is not Pusher's: {text:.200}");
        return;
    };
    match frame {
        Inbound::Established {
            socket_id,
            activity_timeout_secs,
        } => {
            let channels: Vec<String> = {
                let mut d = shared.borrow_mut();
                if let Some(s) = d.socket.as_mut() {
                    s.established = true;
                }
                d.socket_id = Some(socket_id.clone());
                d.activity = Duration::from_secs(activity_timeout_secs.clamp(10, 600));
                d.backoff.reset();
                d.failed_attempts = 0;
                d.polling = false;
                d.transport.set(Transport::Live);
                let mut channels: Vec<String> =
                    d.cursors.channels().map(|(c, _)| c.to_string()).collect();
                for (c, _) in d.attendees.values() {
                    if !channels.contains(c) {
                        channels.push(c.clone());
                    }
                }
                channels
            };
            set_socket_id(Some(socket_id));
            for channel in channels {
                subscribe(shared, channel);
            }
        }
        Inbound::Ping => send(shared, &frames::pong()),
        Inbound::Pong | Inbound::Subscribed { .. } | Inbound::Other => {}
        Inbound::SubscriptionError { channel, status } => {
            leptos::logging::warn!("realtime: {channel} refused ({status})");
        }
        Inbound::Error { code, message } => {
            leptos::logging::warn!("realtime: hub error {code:?}: {message}");
        }
        Inbound::Members { channel, members } => {
            attend(shared, Some(&channel), &PresenceEvent::Members(members));
        }
        Inbound::MemberAdded {
            channel,
            user_id,
            name,
        } => attend(shared, Some(&channel), &PresenceEvent::Added(user_id, name)),
        Inbound::MemberRemoved { channel, user_id } => {
            attend(shared, Some(&channel), &PresenceEvent::Removed(user_id));
        }
        Inbound::Whisper {
            channel,
            user_id,
            event,
            data,
        } => attend(
            shared,
            Some(&channel),
            &PresenceEvent::Whisper {
                user_id,
                event,
                data,
            },
        ),
        Inbound::Reset { channel, seq } => {
            shared.borrow_mut().cursors.reset(&channel, seq);
            deliver(shared, &channel, &Delivery::Reset);
        }
        Inbound::Message { channel, data, .. } => {
            let Ok(envelope) = serde_json::from_str::<Envelope>(&data) else {
                return;
            };
            let fresh = shared.borrow_mut().cursors.accept(&channel, envelope.seq);
            if fresh {
                deliver(shared, &channel, &Delivery::Envelope(Box::new(envelope)));
            }
        }
    }
}

/// Calls the channel's listeners, with the state released.
fn deliver(shared: &Shared, channel: &str, delivery: &Delivery) {
    let listeners: Vec<Listen> = shared
        .borrow()
        .listeners
        .values()
        .filter(|(c, _)| c == channel)
        .map(|(_, f)| f.clone())
        .collect();
    for f in listeners {
        f(delivery);
    }
}

/// Subscribes `channel` on the current socket, resuming after its cursor;
/// a private channel is signed by `/broadcasting/auth` first.
fn subscribe(shared: &Shared, channel: String) {
    let (generation, socket_id) = {
        let d = shared.borrow();
        (d.generation, d.socket_id.clone())
    };
    let Some(socket_id) = socket_id else { return };
    let shared = shared.clone();
    leptos::task::spawn_local(async move {
        let auth = if channel.starts_with("private-") || channel.starts_with("presence-") {
            match authorize(&socket_id, &channel).await {
                Some(auth) => Some(auth),
                None => {
                    leptos::logging::warn!("realtime: not authorized for {channel}");
                    return;
                }
            }
        } else {
            None
        };
        // The cursor as of now, not as of the request: nothing is
        // delivered in between (the socket is new), but be exact.
        let d = shared.borrow();
        if d.generation != generation {
            return;
        }
        // A presence channel is not a log: no cursor, nothing to resume.
        let seq = if channel.parse::<lockstep_wire::PresenceChannel>().is_ok() {
            None
        } else {
            match d.cursors.get(&channel) {
                Some(seq) => Some(seq),
                None => return,
            }
        };
        if let Some(s) = d.socket.as_ref().filter(|s| s.established) {
            let _ =
                s.ws.send_with_str(&frames::subscribe(&channel, auth.as_ref(), seq));
        }
    });
}

fn encode(s: &str) -> String {
    js_sys::encode_uri_component(s).into()
}

/// `POST /broadcasting/auth` with the session cookie, as Echo does.
async fn authorize(socket_id: &str, channel: &str) -> Option<frames::Signed> {
    let body = format!(
        "socket_id={}&channel_name={}",
        encode(socket_id),
        encode(channel)
    );
    let response = gloo_net::http::Request::post("/broadcasting/auth")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(body)
        .ok()?
        .send()
        .await
        .ok()?;
    if !response.ok() {
        return None;
    }
    response.json::<frames::Signed>().await.ok()
}

/// Every few seconds: ping a socket that has been quiet for the activity
/// timeout, and give up on one that did not answer the ping.
fn watchdog(shared: &Shared) {
    let shared = shared.clone();
    let _ = set_interval_with_handle(
        move || {
            let (stale, ping, generation) = {
                let d = shared.borrow();
                let quiet = now_ms() - d.last_heard;
                let activity = d.activity.as_millis() as f64;
                let up = d.socket.as_ref().is_some_and(|s| s.established);
                (
                    up && d.pinged && quiet > activity + 30_000.0,
                    up && !d.pinged && quiet > activity,
                    d.generation,
                )
            };
            if stale {
                failed(&shared, generation, AfterClose::BackOff);
            } else if ping {
                shared.borrow_mut().pinged = true;
                send(&shared, &frames::ping());
            }
        },
        WATCHDOG,
    );
}

/// The browser going offline shows at once; coming back online retries
/// the socket at once instead of waiting out the backoff.
fn on_network_change(shared: &Shared) {
    let offline = {
        let shared = shared.clone();
        Closure::<dyn FnMut()>::new(move || {
            shared.borrow().transport.set(Transport::Offline);
        })
    };
    let online = {
        let shared = shared.clone();
        Closure::<dyn FnMut()>::new(move || {
            let up = shared
                .borrow()
                .socket
                .as_ref()
                .is_some_and(|s| s.established);
            if !up {
                shared.borrow_mut().backoff.reset();
                connect(&shared);
            }
        })
    };
    let w = window();
    let _ = w.add_event_listener_with_callback("offline", offline.as_ref().unchecked_ref());
    let _ = w.add_event_listener_with_callback("online", online.as_ref().unchecked_ref());
    // They live as long as the tab.
    offline.forget();
    online.forget();
}

fn start_polling(shared: &Shared) {
    {
        let mut d = shared.borrow_mut();
        if !d.polling {
            d.polling = true;
            d.transport.set(if online() {
                Transport::Polling
            } else {
                Transport::Offline
            });
        }
        if d.poll_running {
            return;
        }
        d.poll_running = true;
    }
    let shared = shared.clone();
    leptos::task::spawn_local(async move {
        loop {
            if !shared.borrow().polling {
                break;
            }
            poll_all(&shared).await;
            let wait = if hidden() { POLL_HIDDEN } else { POLL_EVERY };
            sleep(wait).await;
        }
        shared.borrow_mut().poll_running = false;
    });
}

/// A channel just followed while polling: read it now rather than at the
/// next tick.
fn poll_soon(shared: &Shared) {
    let shared = shared.clone();
    leptos::task::spawn_local(async move {
        poll_all(&shared).await;
    });
}

/// One round of `events/since` for every followed channel.
async fn poll_all(shared: &Shared) {
    let channels: Vec<(String, i64)> = shared
        .borrow()
        .cursors
        .channels()
        .map(|(c, s)| (c.to_string(), s))
        .collect();
    let mut reachable = true;
    for (channel, _) in channels {
        // Pages of up to 200 until the channel's head.
        loop {
            let Some(after) = shared.borrow().cursors.get(&channel) else {
                break;
            };
            let url = format!(
                "/api/v1/events/since?channel={}&seq={after}&limit=200",
                encode(&channel)
            );
            let mut request = gloo_net::http::Request::get(&url).header(TAB_ID_HEADER, &tab_id());
            if let Some(id) = socket_id() {
                request = request.header(SOCKET_ID_HEADER, &id);
            }
            let since = match request.send().await {
                Ok(r) if r.ok() => r.json::<Since>().await.ok(),
                Ok(_) => None,
                Err(_) => {
                    reachable = false;
                    None
                }
            };
            let Some(since) = since else { break };
            if !shared.borrow().polling {
                // The socket is back: it resumes from the cursor itself.
                return;
            }
            if since.reset {
                shared.borrow_mut().cursors.reset(&channel, since.seq);
                deliver(shared, &channel, &Delivery::Reset);
                break;
            }
            let full = since.events.len() >= 200;
            for envelope in since.events {
                let fresh = shared.borrow_mut().cursors.accept(&channel, envelope.seq);
                if fresh {
                    deliver(shared, &channel, &Delivery::Envelope(Box::new(envelope)));
                }
            }
            if !full {
                break;
            }
        }
    }
    let d = shared.borrow();
    if d.polling {
        d.transport.set(if reachable && online() {
            Transport::Polling
        } else {
            Transport::Offline
        });
    }
}

async fn sleep(d: Duration) {
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
