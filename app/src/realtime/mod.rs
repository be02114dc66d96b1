//! The browser's realtime client, one per tab, provided as context by
//! [`provide_realtime`]. It speaks Pusher protocol 7 to the hub, resumes
//! every channel after its last `seq` when the socket comes back, falls
//! back to polling `GET /api/v1/events/since` when the socket cannot
//! connect, and delivers each envelope once, whichever transport brought
//! it. Pages never see the transport: they follow a channel with
//! [`use_channel`] (each envelope) or [`use_refetch_on`] (refetch a
//! resource, bursts coalesced).
//!
//! - [`frames`]: the Pusher frames it reads and writes;
//! - [`backoff`]: capped exponential reconnect delays with jitter;
//! - [`cursor`]: the last seq per channel (dedup and resume);
//! - [`client`]: the server-function client that sends `X-Socket-ID`;
//! - `driver` (browser only): the socket, the polling loop, the listeners.

pub mod backoff;
pub mod client;
pub mod cursor;
#[cfg(feature = "hydrate")]
mod driver;
pub mod frames;

use leptos::prelude::*;
use lockstep_wire::Envelope;

/// The hub's Pusher app key, which the server provides as context; the
/// shell puts it in `<meta name="lockstep-pusher-key">` for the client.
#[derive(Clone, Debug, Default)]
pub struct PusherKey(pub String);

/// How live changes reach this tab now (the header's indicator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Before the first connection (and on the server).
    Connecting,
    /// The WebSocket is up.
    Live,
    /// The socket dropped; reconnecting with backoff.
    Reconnecting,
    /// The socket cannot connect: polling the log (and still retrying).
    Polling,
    /// The browser is offline, or the server does not answer.
    Offline,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Connecting => "connecting",
            Transport::Live => "live",
            Transport::Reconnecting => "reconnecting",
            Transport::Polling => "polling",
            Transport::Offline => "offline",
        }
    }
}

/// What a channel's follower is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// The next envelope of the channel (never one seen before).
    Envelope(Box<Envelope>),
    /// The log no longer reaches back to where this tab was: refetch.
    Reset,
}

/// The tab's realtime client (a cheap `Copy` handle).
#[derive(Clone, Copy)]
pub struct Realtime {
    transport: RwSignal<Transport>,
    #[cfg(feature = "hydrate")]
    driver: StoredValue<driver::Shared, LocalStorage>,
}

impl Realtime {
    pub fn transport(&self) -> Signal<Transport> {
        self.transport.into()
    }
}

/// Makes the tab's client and provides it; the App calls this once. In
/// the browser it connects at once.
pub fn provide_realtime() -> Realtime {
    let transport = RwSignal::new(Transport::Connecting);
    let rt = Realtime {
        transport,
        #[cfg(feature = "hydrate")]
        driver: StoredValue::new_local(driver::start(transport)),
    };
    provide_context(rt);
    rt
}

pub fn use_realtime() -> Option<Realtime> {
    use_context::<Realtime>()
}

/// Follows `channel` after `from_seq` (the channel's head when the page's
/// data was read, so nothing between that read and now is missed) while
/// the calling component lives; `on` gets each delivery once, in order.
/// On the server it does nothing.
pub fn use_channel(channel: String, from_seq: i64, on: impl Fn(&Delivery) + 'static) {
    #[cfg(feature = "hydrate")]
    if let Some(rt) = use_realtime() {
        let shared = rt.driver.get_value();
        let id = driver::listen(&shared, &channel, from_seq, std::rc::Rc::new(on));
        on_cleanup(move || {
            if let Some(shared) = rt.driver.try_get_value() {
                driver::unlisten(&shared, id);
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (channel, from_seq, on);
}

/// Refetches (calls `refetch`) when `channel` changes after `from_seq`,
/// as Turbo's page refresh does: an envelope is a notification. A burst
/// of envelopes costs one refetch.
pub fn use_refetch_on(channel: String, from_seq: i64, refetch: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        let refetch = std::rc::Rc::new(refetch);
        let scheduled = std::rc::Rc::new(std::cell::Cell::new(false));
        use_channel(channel, from_seq, move |_| {
            if scheduled.replace(true) {
                return;
            }
            let (refetch, scheduled) = (refetch.clone(), scheduled.clone());
            set_timeout(
                move || {
                    scheduled.set(false);
                    refetch();
                },
                std::time::Duration::from_millis(150),
            );
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (channel, from_seq, refetch);
}

/// The header's connection indicator.
#[component]
pub fn ConnectionIndicator() -> impl IntoView {
    let state = use_realtime()
        .map(|rt| rt.transport())
        .unwrap_or_else(|| Signal::derive(|| Transport::Connecting));
    let dot = move || match state.get() {
        Transport::Live => "h-2 w-2 rounded-full bg-emerald-500",
        Transport::Polling => "h-2 w-2 rounded-full bg-amber-500",
        Transport::Offline => "h-2 w-2 rounded-full bg-red-500",
        Transport::Connecting | Transport::Reconnecting => "h-2 w-2 rounded-full bg-slate-400",
    };
    view! {
        <span
            class="inline-flex items-center gap-1.5 rounded-full border border-slate-200 px-2 py-0.5 text-xs text-slate-700"
            role="status"
            aria-label="Live updates"
            data-testid="connection"
            data-state=move || state.get().as_str()
        >
            <span class=dot aria-hidden="true"></span>
            {move || state.get().as_str()}
        </span>
    }
}
