//! The end-user app's home: "my compartments", each with an Open button
//! that answers at once (`accepted` / `denied`) and then shows the locker's
//! real result live, from `private-user.{me}` through the tab's realtime
//! client (the hub's socket, or polling when it cannot connect).

use std::collections::HashMap;

use leptos::prelude::*;
use lockstep_wire::{
    envelope::{names, OpenStatusUpdated},
    OpenReason, OpenStatus,
};
use serde::{Deserialize, Serialize};

use super::common::{ErrorPanel, TopBar};
use crate::{auth::SignedIn, error::AppError, realtime::Delivery};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyCompartmentRow {
    pub id: String,
    pub bank_name: String,
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
    pub status: Option<OpenStatus>,
    pub command_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserHomeData {
    pub me: SignedIn,
    /// `private-user.{me}`.
    pub channel: String,
    pub compartments: Vec<MyCompartmentRow>,
    /// The head of the user's channel when the page was rendered.
    pub seq: i64,
}

/// The live state of one compartment's latest command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub compartment_id: String,
    pub command_id: String,
    pub status: OpenStatus,
    pub reason: Option<OpenReason>,
    /// With `failed`: what the locker said.
    #[serde(default)]
    pub detail: Option<String>,
}

#[server(prefix = "/sfn", endpoint = "user_home", output = crate::codec::Json)]
pub async fn load_user_home() -> Result<UserHomeData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{eventstore::channels, identity::tokens::Ability, lockers, now_ms};
    let principal = ssr::require(Ability::CompartmentRead).await?;
    let user = principal.user();
    let services = ssr::services()?;
    let channel = channels::Channel::User(user.id);
    let seq = channels::head(&services.db, &channel).await?;
    let compartments = lockers::my_compartments(&services, user.id, now_ms())
        .await?
        .into_iter()
        .map(|(c, _grant, bank_name)| MyCompartmentRow {
            id: c.id.to_string(),
            bank_name,
            number: c.number,
            size: c.size,
            label: c.label,
            status: c.latest_status,
            command_id: c.latest_command_id.map(|id| id.to_string()),
        })
        .collect();
    Ok(UserHomeData {
        me: ssr::to_current(user),
        channel: channel.to_string(),
        compartments,
        seq,
    })
}

#[server(
    prefix = "/sfn",
    endpoint = "open_compartment",
    client = crate::realtime::client::SocketClient,
    output = crate::codec::Json
)]
pub async fn open_compartment(compartment_id: String) -> Result<StatusUpdate, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, now_ms, opens, CoreError};
    let principal = ssr::require(Ability::CompartmentOpen).await?;
    let services = ssr::services()?;
    let id = uuid_of(&compartment_id)?;
    let caller = ssr::caller(&principal)?;
    let input = opens::OpenCommandInput {
        compartment_id: id,
        ..Default::default()
    };
    match opens::request_open(&services, &caller, input, now_ms()).await {
        Ok(d) => Ok(StatusUpdate {
            compartment_id,
            command_id: d.command_id.to_string(),
            status: d.status,
            reason: d.reason.map(OpenReason::from),
            detail: None,
        }),
        Err(CoreError::NotFound) => {
            Err(AppError::Invalid("That compartment does not exist.".into()))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(feature = "ssr")]
fn uuid_of(s: &str) -> Result<lockstep_core::UuidAlias, AppError> {
    s.parse()
        .map_err(|_| AppError::Invalid("That compartment does not exist.".into()))
}

#[component]
pub fn UserHome() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let data = Resource::new_blocking(|| (), |_| load_user_home());
    view! {
        <Suspense fallback=|| view! { <p class="p-6 text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => view! { <MyCompartments data=d/> }.into_any(),
                    Err(e) => view! { <ErrorPanel message=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Words for a status, shown under the compartment.
fn describe(status: OpenStatus, reason: Option<OpenReason>, detail: Option<&str>) -> String {
    let reason = reason.map(|r| r.as_str().replace('_', " "));
    match (status, reason) {
        (OpenStatus::Accepted, _) => "Accepted: sending to the locker…".into(),
        (OpenStatus::Sent, _) => "Sent: waiting for the locker…".into(),
        (OpenStatus::Opened, _) => "Opened".into(),
        (OpenStatus::Failed, Some(r)) => match detail {
            Some(d) => format!("Failed: {r} ({d})"),
            None => format!("Failed: {r}"),
        },
        (OpenStatus::Denied, Some(r)) => format!("Denied: {r}"),
        (other, _) => other.to_string(),
    }
}

#[component]
fn MyCompartments(data: UserHomeData) -> impl IntoView {
    // compartment id → (status, reason, command id) of its latest command.
    let initial: HashMap<String, StatusUpdate> = data
        .compartments
        .iter()
        .filter_map(|c| {
            Some((
                c.id.clone(),
                StatusUpdate {
                    compartment_id: c.id.clone(),
                    command_id: c.command_id.clone()?,
                    status: c.status?,
                    reason: None,
                    detail: None,
                },
            ))
        })
        .collect();
    let latest = RwSignal::new(initial);
    let apply = move |u: StatusUpdate| {
        latest.update(|m| {
            // Only the latest command of a compartment is shown; an older
            // command's late envelope must not overwrite a newer one, nor
            // an earlier status of the same command a later one.
            let newer = m.get(&u.compartment_id).is_none_or(|cur| {
                cur.command_id < u.command_id
                    || (cur.command_id == u.command_id && cur.status.stage() <= u.status.stage())
            });
            if newer {
                m.insert(u.compartment_id.clone(), u);
            }
        })
    };
    // Each card has its own Open action (and pending state).
    let open_error = RwSignal::new(None::<String>);

    // Follow the user's channel from where the page's data was read.
    crate::realtime::use_channel(data.channel.clone(), data.seq, move |d| match d {
        Delivery::Envelope(e) => {
            if let Some(u) = e.data_as::<OpenStatusUpdated>(names::OPEN_STATUS_UPDATED) {
                apply(StatusUpdate {
                    compartment_id: u.compartment_id.to_string(),
                    command_id: u.command_id.to_string(),
                    status: u.status,
                    reason: u.reason,
                    detail: u.detail,
                });
            }
        }
        // History was pruned past this page's data: read it again.
        Delivery::Reset => {
            let _ = window().location().reload();
        }
    });

    let compartments = data.compartments.clone();
    view! {
        <div class="min-h-screen" data-testid="user-app">
            <TopBar user=data.me.clone() area="My lockers"/>
            <main class="mx-auto max-w-lg p-4">
                <h1 class="text-xl font-semibold tracking-tight">{format!("Hello, {}", data.me.name)}</h1>
                <h2 class="mt-6 text-sm font-semibold uppercase tracking-wide text-slate-500">
                    "My compartments"
                </h2>
                <Show when=move || open_error.get().is_some()>
                    <p role="alert" class="mt-2 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700">
                        {move || open_error.get()}
                    </p>
                </Show>
                {if compartments.is_empty() {
                    view! {
                        <p class="mt-2 rounded-lg border border-dashed border-slate-300 bg-white p-6 text-center text-sm text-slate-500">
                            "No compartments have been shared with you yet."
                        </p>
                    }
                        .into_any()
                } else {
                    view! {
                        <ul class="mt-2 space-y-3">
                            {compartments
                                .into_iter()
                                .map(|c| {
                                    let id = c.id.clone();
                                    let id_for_state = c.id.clone();
                                    let state = move || latest.with(|m| m.get(&id_for_state).cloned());
                                    let open = Action::new(move |id: &String| {
                                        let id = id.clone();
                                        async move {
                                            match open_compartment(id).await {
                                                Ok(u) => {
                                                    open_error.set(None);
                                                    apply(u);
                                                }
                                                Err(e) => open_error.set(Some(e.to_string())),
                                            }
                                        }
                                    });
                                    let pending = move || open.pending().get();
                                    let title = match &c.label {
                                        Some(l) => format!("{} · #{} {}", c.bank_name, c.number, l),
                                        None => format!("{} · #{}", c.bank_name, c.number),
                                    };
                                    view! {
                                        <li
                                            class="flex items-center justify-between gap-3 rounded-xl border border-slate-200 bg-white p-4"
                                            data-testid=format!("compartment-{}", c.number)
                                        >
                                            <div>
                                                <p class="font-medium">{title}</p>
                                                <p class="text-xs text-slate-500">{c.size.clone()}</p>
                                                <div role="status" aria-live="polite">
                                                {move || {
                                                    state()
                                                        .map(|s| {
                                                            view! {
                                                                <span
                                                                    class=crate::format::status_badge(s.status)
                                                                    data-testid="open-status"
                                                                    data-status=s.status.as_str()
                                                                    data-command-id=s.command_id.clone()
                                                                >
                                                                    {describe(s.status, s.reason, s.detail.as_deref())}
                                                                </span>
                                                            }
                                                        })
                                                }}
                                                </div>
                                            </div>
                                            <button
                                                type="button"
                                                data-testid="open"
                                                disabled=pending
                                                on:click=move |_| {
                                                    open.dispatch(id.clone());
                                                }
                                                class="rounded-lg bg-indigo-600 px-4 py-2 text-sm font-semibold text-white hover:bg-indigo-500 disabled:opacity-60"
                                            >
                                                "Open"
                                            </button>
                                        </li>
                                    }
                                })
                                .collect_view()}
                        </ul>
                    }
                        .into_any()
                }}
            </main>
        </div>
    }
}
