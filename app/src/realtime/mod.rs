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
//! - `driver` (browser only): the socket, the polling loop, the listeners;
//! - [`live_resource`]: page data that live refetches replace in place;
//! - [`presence`]: who else has a record open, and who is editing it;
//! - [`table_sync`]: a table's throttled, pausable live refresh.

pub mod backoff;
pub mod client;
pub mod cursor;
#[cfg(feature = "hydrate")]
mod driver;
pub mod frames;
pub mod live_resource;
pub mod presence;
pub mod table_sync;

pub use live_resource::LiveResource;

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

/// What a presence channel's joiner is told.
#[derive(Clone, Debug, PartialEq)]
pub enum PresenceEvent {
    /// Who is there on joining (user id, name), this connection included.
    Members(Vec<(String, String)>),
    Added(String, String),
    Removed(String),
    /// A client event another member sent.
    Whisper {
        user_id: String,
        event: String,
        data: serde_json::Value,
    },
    /// The socket dropped: who is there is unknown until it is back.
    Lost,
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
        let poke = coalesced(refetch);
        use_channel(channel, from_seq, move |_| poke());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (channel, from_seq, refetch);
}

/// `refetch`, called 150 ms after the first of a burst of pokes, once.
#[cfg(feature = "hydrate")]
fn coalesced(refetch: impl Fn() + 'static) -> std::rc::Rc<dyn Fn()> {
    let refetch = std::rc::Rc::new(refetch);
    let scheduled = std::rc::Rc::new(std::cell::Cell::new(false));
    std::rc::Rc::new(move || {
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
    })
}

/// A page whose channels come with its data (read inside a `Suspend`):
/// [`use_live_refetch`] is called at the component's top level, where
/// the component's owner is current, and [`LiveRefetch::follow`] each time
/// the data arrives. The first call (or one naming other channels) starts
/// following them from the seqs given; the listeners live as long as the
/// component, not as long as one render of its data (a `Suspend` that
/// resumes after an await has no owner to hang them on).
#[derive(Clone, Copy)]
pub struct LiveRefetch {
    #[cfg(feature = "hydrate")]
    inner: StoredValue<LiveInner, LocalStorage>,
}

#[cfg(feature = "hydrate")]
struct LiveInner {
    rt: Option<Realtime>,
    /// What each delivery is given to.
    on: std::rc::Rc<dyn Fn(&Delivery)>,
    /// Asks for a refetch (a burst within 150 ms is one), when following
    /// refetches: also called when data arrives read before the cursor.
    poke: Option<std::rc::Rc<dyn Fn()>>,
    following: Vec<String>,
    ids: Vec<u64>,
}

/// See [`LiveRefetch`]: envelopes on the followed channels call `refetch`,
/// a burst coalesced into one call.
pub fn use_live_refetch(refetch: impl Fn() + 'static) -> LiveRefetch {
    #[cfg(feature = "hydrate")]
    {
        let poke = coalesced(refetch);
        let on_poke = poke.clone();
        live_follower(std::rc::Rc::new(move |_: &Delivery| on_poke()), Some(poke))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = refetch;
        LiveRefetch {}
    }
}

/// Like [`use_channel`], for a channel known only once data arrives:
/// call it at the component's top level and [`LiveRefetch::follow`] the
/// channel from the data; `on` gets each delivery once, in order.
pub fn use_deliveries(on: impl Fn(&Delivery) + 'static) -> LiveRefetch {
    #[cfg(feature = "hydrate")]
    {
        live_follower(std::rc::Rc::new(on), None)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = on;
        LiveRefetch {}
    }
}

#[cfg(feature = "hydrate")]
fn live_follower(
    on: std::rc::Rc<dyn Fn(&Delivery)>,
    poke: Option<std::rc::Rc<dyn Fn()>>,
) -> LiveRefetch {
    let live = LiveRefetch {
        inner: StoredValue::new_local(LiveInner {
            rt: use_realtime(),
            on,
            poke,
            following: Vec::new(),
            ids: Vec::new(),
        }),
    };
    on_cleanup(move || live.stop());
    live
}

impl LiveRefetch {
    /// Follows `channels` (name, seq the data was read at), unless they are
    /// the ones followed already. Data read at a seq the tab is already
    /// past (an older refetch answered after a newer one) asks for another
    /// refetch, so the page never settles on stale data.
    pub fn follow(&self, channels: &[(&str, i64)]) {
        #[cfg(feature = "hydrate")]
        {
            let names: Vec<String> = channels.iter().map(|(c, _)| c.to_string()).collect();
            let Some((same, rt, on, poke)) = self
                .inner
                .try_with_value(|i| (i.following == names, i.rt, i.on.clone(), i.poke.clone()))
            else {
                return;
            };
            let Some(rt) = rt else { return };
            let shared = rt.driver.get_value();
            if same {
                let stale = channels
                    .iter()
                    .any(|(c, seq)| driver::cursor(&shared, c).is_some_and(|at| at > *seq));
                if let (true, Some(poke)) = (stale, poke) {
                    poke();
                }
                return;
            }
            self.stop();
            let ids: Vec<u64> = channels
                .iter()
                .map(|(c, seq)| driver::listen(&shared, c, *seq, on.clone()))
                .collect();
            self.inner.update_value(|i| {
                i.following = names;
                i.ids = ids;
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = channels;
    }

    #[cfg(feature = "hydrate")]
    fn stop(&self) {
        let Some((rt, ids)) = self.inner.try_update_value(|i| {
            i.following.clear();
            (i.rt, std::mem::take(&mut i.ids))
        }) else {
            return;
        };
        if let Some(shared) = rt.and_then(|rt| rt.driver.try_get_value()) {
            for id in ids {
                driver::unlisten(&shared, id);
            }
        }
    }
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
