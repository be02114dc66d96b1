//! The admin panel (`/admin`): a nested-route layout (top bar, a sidebar
//! of real links, the page in its outlet, toasts) and one module per page.
//! Every page renders complete on the server and goes live through the
//! tab's realtime client.
//!
//! - [`dashboard`]: lockers online, opens today, failures, opens per minute;
//! - [`banks`]: the locker banks table and a bank's page (compartments,
//!   admin Open with a reason);
//! - [`commands`]: the command history with filters, and each command's
//!   timeline;
//! - [`provisioning`]: provisioning keys, pre-registration, and a bank's
//!   live provisioning progress;
//! - [`access`]: granting and revoking compartments, with validity windows;
//! - [`users`]: the tenant's accounts (create, role, disable);
//! - [`records`]: the editor every edited record shares (version guard,
//!   "updated by someone else", the conflict dialog, who else is here);
//! - [`notifications`]: the admin's ended commands and the unread count;
//! - [`toasts`]: the toasts, and the notification of the admin's own
//!   commands ending;
//! - [`routes`]: the pages (and the layout) as lazy routes, each a wasm
//!   chunk of its own.

pub mod access;
pub mod banks;
pub mod commands;
pub mod dashboard;
pub mod notifications;
pub mod provisioning;
pub mod records;
pub mod routes;
pub mod toasts;
pub mod users;

use leptos::prelude::*;
use leptos_router::components::{Outlet, A};
use serde::{Deserialize, Serialize};

use super::common::{ErrorPanel, Forbidden, TopBar};
use crate::{auth::SignedIn, error::AppError};

/// What every admin page's frame needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameData {
    pub me: SignedIn,
    pub tenant_name: String,
    /// `private-user.{me}`: the admin's own commands (their toasts), and
    /// its head when the frame was read.
    pub my_channel: String,
    pub my_seq: i64,
    /// The notification list's unread count when the frame was read.
    pub unread: i64,
}

#[server(prefix = "/sfn", endpoint = "admin_frame", output = crate::codec::Json)]
pub async fn admin_frame() -> Result<FrameData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::{self, Channel},
        identity::{accounts, tokens::Ability},
    };
    let principal = ssr::require(Ability::LockerRead).await?;
    let user = principal.user();
    let services = ssr::services()?;
    let tenant_name = accounts::find_tenant(&services.db, user.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let channel = Channel::User(user.id);
    Ok(FrameData {
        me: ssr::to_current(user),
        tenant_name,
        my_seq: channels::head(&services.db, &channel).await?,
        unread: lockstep_core::inbox::inbox(&services.db, user.id, 1)
            .await?
            .unread,
        my_channel: channel.to_string(),
    })
}

/// The admin tenant's channels and their heads, which pages read with their
/// data so that following them from there misses nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    pub channel: String,
    pub seq: i64,
}

#[cfg(feature = "ssr")]
pub(crate) async fn followed(
    services: &lockstep_core::Services,
    channel: lockstep_core::eventstore::channels::Channel,
) -> Result<Followed, AppError> {
    let seq = lockstep_core::eventstore::channels::head(&services.db, &channel).await?;
    Ok(Followed {
        channel: channel.to_string(),
        seq,
    })
}

/// Parses an id from a URL or a form; anything else is "not found" (the
/// same answer as another tenant's id).
#[cfg(feature = "ssr")]
pub(crate) fn id_of(s: &str) -> Result<lockstep_core::UuidAlias, AppError> {
    s.parse().map_err(|_| AppError::NotFound)
}

const NAV: [(&str, &str); 7] = [
    ("/admin", "Dashboard"),
    ("/admin/banks", "Locker banks"),
    ("/admin/provisioning", "Provisioning"),
    ("/admin/commands", "Commands"),
    ("/admin/access", "Access"),
    ("/admin/users", "Users"),
    ("/admin/notifications", "Notifications"),
];

#[component]
pub fn AdminLayout() -> impl IntoView {
    // Blocking: the server waits for it before sending the page, so a
    // refusal is sent with its 403 status.
    let frame = Resource::new_blocking(|| (), |_| admin_frame());
    let (nav_open, set_nav_open) = signal(false);
    let toasts = toasts::provide_toasts();
    let mine = toasts::notify_my_commands(toasts);
    let (unread, badge) = notifications::provide_unread();
    // The page (the outlet) is not inside the frame's `Suspend`: rendered
    // there, the server rendered it twice now and then (a second copy of
    // its resource, the first failing), and hydration broke on the mismatch.
    view! {
        <div class="min-h-screen" data-testid="admin">
            <Suspense fallback=|| view! { <div class="h-14 border-b border-slate-200 bg-white"></div> }>
                {move || Suspend::new(async move {
                    match frame.await {
                        Ok(f) => {
                            mine.follow(&[(&f.my_channel, f.my_seq)]);
                            badge.follow(&[(&f.my_channel, f.my_seq)]);
                            view! { <TopBar user=f.me.clone() area="Admin"/> }.into_any()
                        }
                        // The page below says why (its own call is refused too).
                        Err(_) => ().into_any(),
                    }
                })}
            </Suspense>
            <div class="md:flex">
                <div class="border-b border-slate-200 bg-white px-4 py-2 md:hidden">
                    <button
                        type="button"
                        data-testid="nav-toggle"
                        aria-controls="admin-nav"
                        aria-expanded=move || nav_open.get().to_string()
                        on:click=move |_| set_nav_open.update(|open| *open = !*open)
                        class="rounded-md border border-slate-300 px-3 py-1.5 text-sm font-medium"
                    >
                        {move || if nav_open.get() { "Close menu" } else { "Menu" }}
                    </button>
                </div>
                <nav
                    id="admin-nav"
                    aria-label="Admin"
                    class=move || {
                        if nav_open.get() {
                            "block w-full border-b border-slate-200 bg-white p-4 md:block md:w-56 md:shrink-0 md:border-b-0 md:border-r"
                        } else {
                            "hidden w-full border-b border-slate-200 bg-white p-4 md:block md:w-56 md:shrink-0 md:border-b-0 md:border-r"
                        }
                    }
                >
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move {
                            frame.await.ok().map(|f| view! { <NavLinks tenant=f.tenant_name unread base=f.unread/> })
                        })}
                    </Suspense>
                </nav>
                <main class="min-w-0 flex-1 p-4 md:p-8">
                    <Outlet/>
                </main>
            </div>
            <toasts::ToastRegion toasts/>
        </div>
    }
}

#[component]
fn NavLinks(tenant: String, unread: notifications::Unread, base: i64) -> impl IntoView {
    view! {
        <p class="mb-2 px-3 text-xs font-semibold uppercase tracking-wide text-slate-500">{tenant}</p>
        <ul class="space-y-1 text-sm">
            {NAV
                .iter()
                .map(|(href, label)| {
                    view! {
                        <li>
                            <A
                                href=*href
                                exact=*href == "/admin"
                                attr:class="block rounded-md px-3 py-2 text-slate-700 hover:bg-slate-100 aria-[current=page]:bg-indigo-50 aria-[current=page]:font-medium aria-[current=page]:text-indigo-700"
                            >
                                {*label}
                                {(*href == "/admin/notifications").then(|| view! { <notifications::UnreadBadge unread base/> })}
                            </A>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

/// A page's heading and its one-line description.
#[component]
pub fn PageTitle(#[prop(into)] title: String, #[prop(into)] lead: String) -> impl IntoView {
    view! {
        <h1 class="text-2xl font-semibold tracking-tight">{title}</h1>
        <p class="mt-1 text-sm text-slate-600">{lead}</p>
    }
}

/// What a page shows instead of its data when loading it failed.
pub fn failure(e: AppError) -> AnyView {
    match e {
        AppError::Forbidden => view! { <Forbidden/> }.into_any(),
        AppError::NotFound => view! {
            <p role="alert" class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-800" data-testid="not-found">
                "Not found."
            </p>
        }
        .into_any(),
        e => view! { <ErrorPanel message=e.to_string()/> }.into_any(),
    }
}
