//! Toasts (a live region in the corner) and the notification an admin gets
//! wherever they are in the panel when a command they issued ends
//! (`opened` or `failed`), from their own channel `private-user.{me}`.

use leptos::prelude::*;
use lockstep_wire::{
    envelope::{names, OpenStatusUpdated},
    OpenStatus,
};

use crate::{format, realtime::Delivery};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toast {
    pub id: u64,
    pub text: String,
    pub href: Option<String>,
    pub error: bool,
}

/// The panel's toasts (a `Copy` handle, provided as context).
#[derive(Clone, Copy)]
pub struct Toasts {
    list: RwSignal<Vec<Toast>>,
    next: StoredValue<u64>,
}

/// How long a toast stays.
const SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(8);

impl Toasts {
    pub fn push(&self, text: String, href: Option<String>, error: bool) {
        let id = self.next.get_value() + 1;
        self.next.set_value(id);
        self.list.update(|l| {
            l.push(Toast {
                id,
                text,
                href,
                error,
            });
            // At most five on screen.
            let excess = l.len().saturating_sub(5);
            l.drain(..excess);
        });
        let list = self.list;
        set_timeout(move || list.update(|l| l.retain(|t| t.id != id)), SHOWN_FOR);
    }

    fn dismiss(&self, id: u64) {
        self.list.update(|l| l.retain(|t| t.id != id));
    }
}

pub fn provide_toasts() -> Toasts {
    let toasts = Toasts {
        list: RwSignal::new(Vec::new()),
        next: StoredValue::new(0),
    };
    provide_context(toasts);
    toasts
}

pub fn use_toasts() -> Option<Toasts> {
    use_context::<Toasts>()
}

/// A toast for each command of the admin's own reaching `opened` or
/// `failed`. Their channel carries only commands they issued: the caller
/// follows `private-user.{me}` with the returned follower once known.
pub fn notify_my_commands(toasts: Toasts) -> crate::realtime::LiveRefetch {
    crate::realtime::use_deliveries(move |d| {
        let Delivery::Envelope(e) = d else { return };
        let Some(u) = e.data_as::<OpenStatusUpdated>(names::OPEN_STATUS_UPDATED) else {
            return;
        };
        let short = u.command_id.to_string()[..8].to_string();
        let href = Some(format!("/admin/commands/{}", u.command_id));
        match u.status {
            OpenStatus::Opened => toasts.push(format!("Command {short}… opened."), href, false),
            OpenStatus::Failed => {
                let reason = u
                    .reason
                    .map(|r| format::words(r.as_str()))
                    .unwrap_or_else(|| "unknown reason".into());
                toasts.push(format!("Command {short}… failed: {reason}."), href, true)
            }
            _ => {}
        }
    })
}

#[component]
pub fn ToastRegion(toasts: Toasts) -> impl IntoView {
    view! {
        <div
            class="pointer-events-none fixed inset-x-4 bottom-4 z-50 flex flex-col items-end gap-2 sm:left-auto"
            role="status"
            aria-live="polite"
            data-testid="toasts"
        >
            <For each=move || toasts.list.get() key=|t| t.id let:t>
                <div
                    class=if t.error {
                        "pointer-events-auto flex max-w-sm items-start gap-3 rounded-lg border border-red-200 bg-white px-4 py-3 text-sm text-red-800 shadow-lg"
                    } else {
                        "pointer-events-auto flex max-w-sm items-start gap-3 rounded-lg border border-emerald-200 bg-white px-4 py-3 text-sm text-emerald-900 shadow-lg"
                    }
                    data-testid="toast"
                >
                    {match t.href.clone() {
                        Some(href) => view! { <a href=href class="underline">{t.text.clone()}</a> }.into_any(),
                        None => view! { <span>{t.text.clone()}</span> }.into_any(),
                    }}
                    <button
                        type="button"
                        aria-label="Dismiss"
                        class="ml-auto text-slate-500 hover:text-slate-900"
                        on:click=move |_| toasts.dismiss(t.id)
                    >
                        "×"
                    </button>
                </div>
            </For>
        </div>
    }
}
