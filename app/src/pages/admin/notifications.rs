//! Notifications (Filament's database notifications): every command the
//! admin issued that ended, newest first, unread ones marked, with "mark
//! all as read"; and the unread count beside the sidebar's link, live
//! from the admin's own channel `private-user.{me}`.

use leptos::prelude::*;

use crate::realtime::LiveResource;
use leptos_router::components::A;
use lockstep_wire::OpenStatus;
use serde::{Deserialize, Serialize};

use super::{failure, Followed, PageTitle};
use crate::{
    error::AppError,
    format,
    realtime::{client::SocketClient, use_live_refetch},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRow {
    pub command_id: String,
    pub place: String,
    pub status: OpenStatus,
    pub reason: Option<String>,
    pub ended_at: i64,
    pub unread: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationsData {
    pub items: Vec<NoteRow>,
    pub unread: i64,
    /// `private-user.{me}`, read before the list.
    pub live: Followed,
}

#[server(prefix = "/sfn", endpoint = "my_notifications", output = crate::codec::Json)]
pub async fn my_notifications() -> Result<NotificationsData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{eventstore::channels::Channel, identity::tokens::Ability, inbox};
    let principal = ssr::require(Ability::LockerRead).await?;
    let services = ssr::services()?;
    let me = principal.user().id;
    let live = super::followed(&services, Channel::User(me)).await?;
    let inbox = inbox::inbox(&services.db, me, 50).await?;
    Ok(NotificationsData {
        live,
        unread: inbox.unread,
        items: inbox
            .items
            .into_iter()
            .map(|i| NoteRow {
                command_id: i.command_id.to_string(),
                place: format!("{} · #{}", i.bank_name, i.compartment_number),
                status: i.status,
                reason: i.failure_reason.map(|r| r.as_str().to_string()),
                ended_at: i.ended_at,
                unread: i.unread,
            })
            .collect(),
    })
}

/// The unread count alone (the sidebar's badge).
#[server(prefix = "/sfn", endpoint = "unread_notifications", output = crate::codec::Json)]
pub async fn unread_notifications() -> Result<i64, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, inbox};
    let principal = ssr::require(Ability::LockerRead).await?;
    let services = ssr::services()?;
    Ok(inbox::inbox(&services.db, principal.user().id, 1)
        .await?
        .unread)
}

/// Marks read what ended up to `until` (the newest item shown).
#[server(prefix = "/sfn", endpoint = "mark_notifications_read", client = SocketClient, output = crate::codec::Json)]
pub async fn mark_notifications_read(until: i64) -> Result<(), AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, inbox};
    let principal = ssr::require(Ability::LockerRead).await?;
    let services = ssr::services()?;
    inbox::mark_read(&services.db, principal.user().id, until).await?;
    Ok(())
}

/// The badge's count: the frame's (so the server renders it) until a
/// refresh, when the admin's channel moves or the list is marked read.
#[derive(Clone, Copy)]
pub struct Unread(RwSignal<Option<i64>>);

impl Unread {
    pub fn refresh(self) {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            if let Ok(n) = unread_notifications().await {
                self.0.try_set(Some(n));
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = self;
    }
}

/// The unread count, provided as context; the layout follows the admin's
/// channel with the returned follower once the frame is read.
pub fn provide_unread() -> (Unread, crate::realtime::LiveRefetch) {
    let unread = Unread(RwSignal::new(None));
    let live = use_live_refetch(move || unread.refresh());
    provide_context(unread);
    (unread, live)
}

/// The sidebar's badge: `base` (the frame's count) until refreshed.
#[component]
pub fn UnreadBadge(unread: Unread, base: i64) -> impl IntoView {
    move || {
        let n = unread.0.get().unwrap_or(base);
        (n > 0).then(|| {
            view! {
                <span class="ml-2 rounded-full bg-indigo-600 px-2 py-0.5 text-xs font-semibold text-white" data-testid="unread-count">
                    {n}<span class="sr-only">" unread"</span>
                </span>
            }
        })
    }
}

#[component]
pub fn Notifications() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let data = LiveResource::new(|| (), |_| my_notifications());
    let live = use_live_refetch(move || data.refetch());
    let unread = use_context::<Unread>();
    let mark = Action::new(move |until: &i64| {
        let until = *until;
        async move {
            let r = mark_notifications_read(until).await;
            data.refetch();
            if let Some(u) = unread {
                u.refresh();
            }
            r
        }
    });
    view! {
        <PageTitle title="Notifications" lead="Your commands that ended, newest first."/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || {
                Suspend::new(async move {
                match data.read().await {
                    Ok(d) => {
                        live.follow(&[(&d.live.channel, d.live.seq)]);
                        view! { <NoteList d mark/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}}
        </Transition>
    }
}

#[component]
fn NoteList(d: NotificationsData, mark: Action<i64, Result<(), AppError>>) -> impl IntoView {
    let newest = d.items.first().map(|i| i.ended_at);
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white">
            <div class="flex flex-wrap items-center justify-between gap-2 border-b border-slate-200 p-4">
                <h2 class="font-semibold" data-testid="notes-unread">{format!("{} unread", d.unread)}</h2>
                {newest.filter(|_| d.unread > 0).map(|until| view! {
                    <button type="button" data-testid="notes-mark-read" on:click=move |_| { mark.dispatch(until); }
                        class="rounded-md border border-slate-300 px-3 py-1.5 text-sm font-medium hover:bg-slate-100">
                        "Mark all as read"
                    </button>
                })}
            </div>
            <ul class="divide-y divide-slate-100 text-sm" data-testid="notes">
                {if d.items.is_empty() {
                    view! { <li class="p-4 text-slate-600">"Nothing yet: commands you issue appear here when they end."</li> }.into_any()
                } else {
                    d.items.into_iter().map(|n| {
                        let short = n.command_id[..8].to_string();
                        let what = match (&n.status, &n.reason) {
                            (OpenStatus::Failed, Some(r)) => format!("failed: {}", format::words(r)),
                            (s, _) => s.as_str().to_string(),
                        };
                        view! {
                            <li class=if n.unread { "flex flex-wrap items-center gap-3 bg-indigo-50 p-4" } else { "flex flex-wrap items-center gap-3 p-4" }
                                data-testid="note" data-unread=n.unread.to_string() data-command=n.command_id.clone()>
                                {n.unread.then(|| view! { <span class="h-2 w-2 rounded-full bg-indigo-600" aria-hidden="true"></span><span class="sr-only">"Unread: "</span> })}
                                <span class=format::status_badge(n.status)>{what}</span>
                                <A href=format!("/admin/commands/{}", n.command_id) attr:class="font-mono underline">{format!("{short}…")}</A>
                                <span>{n.place.clone()}</span>
                                <span class="ml-auto text-xs text-slate-600">{format::utc(n.ended_at)}</span>
                            </li>
                        }
                    }).collect_view().into_any()
                }}
            </ul>
        </section>
    }
}
