//! Provisioning: provisioning keys (create, shown once with a copy
//! button; revoke), pre-registering a bank, the banks waiting to be
//! provisioned (live, so a locker that provisions itself with a key shows
//! up at once), and a bank's progress page: each step (received,
//! validated, credentials created, delivered, first heartbeat) with a
//! progress bar and its time as it happens, a failure in place with its
//! reason, and on to the bank's page when done.

use leptos::prelude::*;

use crate::realtime::LiveResource;
use leptos_router::{
    components::A,
    hooks::{use_navigate, use_params_map},
    NavigateOptions,
};
use serde::{Deserialize, Serialize};

use super::{failure, Followed, PageTitle};
use crate::{
    error::AppError,
    format,
    realtime::{client::SocketClient, use_live_refetch},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub id: String,
    pub name: String,
    pub serial: String,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningData {
    pub keys: Vec<KeyRow>,
    /// Banks not provisioned yet (newest first).
    pub waiting: Vec<Waiting>,
    pub live: Followed,
}

#[server(prefix = "/sfn", endpoint = "provisioning_overview", output = crate::codec::Json)]
pub async fn provisioning_overview() -> Result<ProvisioningData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel, identity::tokens::Ability, lockers, provisioning,
    };
    let principal = ssr::require(Ability::LockerWrite).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    let live = super::followed(&services, Channel::TenantLockers(tenant)).await?;
    let caller = ssr::caller(&principal)?;
    let keys = provisioning::list_keys(&services, &caller)
        .await?
        .into_iter()
        .rev()
        .map(|k| KeyRow {
            id: k.id.to_string(),
            name: k.name,
            created_at: k.created_at,
            revoked: k.revoked_at.is_some(),
        })
        .collect();
    let mut waiting: Vec<Waiting> = lockers::list_banks(&services, tenant)
        .await?
        .into_iter()
        .filter(|b| b.state != "provisioned" && b.state != "decommissioned")
        .map(|b| Waiting {
            id: b.id.to_string(),
            name: b.name,
            serial: b.serial,
            state: b.state,
        })
        .collect();
    // UUIDv7: newest first.
    waiting.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(ProvisioningData {
        keys,
        waiting,
        live,
    })
}

/// A new key: its secret, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    pub name: String,
    pub secret: String,
}

#[server(prefix = "/sfn", endpoint = "create_provisioning_key", client = SocketClient, output = crate::codec::Json)]
pub async fn create_provisioning_key(name: String) -> Result<NewKey, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, provisioning};
    let principal = ssr::require(Ability::LockerWrite).await?;
    let services = ssr::services()?;
    let caller = ssr::caller(&principal)?;
    let (key, secret) = provisioning::create_key(&services, &caller, &name, None).await?;
    Ok(NewKey {
        name: key.name,
        secret,
    })
}

#[server(prefix = "/sfn", endpoint = "revoke_provisioning_key", client = SocketClient, output = crate::codec::Json)]
pub async fn revoke_provisioning_key(key_id: String) -> Result<(), AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, provisioning, CoreError};
    let principal = ssr::require(Ability::LockerWrite).await?;
    let services = ssr::services()?;
    let caller = ssr::caller(&principal)?;
    let id = super::id_of(&key_id)?;
    match provisioning::revoke_key(&services, &caller, id).await {
        Err(CoreError::NotFound) => Err(ssr::refuse(AppError::NotFound, "not_found")),
        other => Ok(other?),
    }
}

#[server(prefix = "/sfn", endpoint = "preregister_bank", client = SocketClient, output = crate::codec::Json)]
pub async fn preregister_bank(
    serial: String,
    name: String,
    location: Option<String>,
    compartments: u32,
) -> Result<String, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        identity::tokens::Ability,
        lockers::{self, NewBank, NewCompartment},
    };
    let principal = ssr::require(Ability::LockerWrite).await?;
    let services = ssr::services()?;
    let caller = ssr::caller(&principal)?;
    let bank = lockers::register_bank(
        &services,
        &caller,
        NewBank {
            serial,
            name,
            location: location.filter(|l| !l.trim().is_empty()),
            compartments: (1..=i64::from(compartments.min(500)))
                .map(|number| NewCompartment {
                    number,
                    size: "medium".into(),
                    label: None,
                })
                .collect(),
        },
    )
    .await?;
    Ok(bank.id.to_string())
}

#[component]
pub fn Provisioning() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let data = LiveResource::new(|| (), |_| provisioning_overview());
    let live = use_live_refetch(move || data.refetch());
    // Outside the live region: a refetch must not lose the new key's
    // secret (it is shown once).
    let create = Action::new(move |name: &String| {
        let name = name.clone();
        async move {
            let r = create_provisioning_key(name).await;
            data.refetch();
            r
        }
    });
    let revoke = Action::new(move |id: &String| {
        let id = id.clone();
        async move {
            let r = revoke_provisioning_key(id).await;
            data.refetch();
            r
        }
    });
    view! {
        <PageTitle title="Provisioning" lead="Keys lockers provision themselves with, and banks on their way."/>
        <NewKeyForm create/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(d) => {
                        live.follow(&[(&d.live.channel, d.live.seq)]);
                        view! { <KeyList keys=d.keys.clone() revoke/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
        <PreRegisterForm/>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(d) => view! { <WaitingList waiting=d.waiting.clone()/> }.into_any(),
                    Err(_) => ().into_any(),
                }
            })}
        </Transition>
    }
}

/// Copies `text` to the clipboard (browser only).
fn copy(text: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().navigator().clipboard().write_text(text);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = text;
}

#[component]
fn NewKeyForm(create: Action<String, Result<NewKey, AppError>>) -> impl IntoView {
    let key_name = RwSignal::new(String::new());
    let input = "mt-1 w-full rounded-md border border-slate-300 px-3 py-1.5";
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-labelledby="keys-h">
            <h2 id="keys-h" class="font-semibold">"Provisioning keys"</h2>
            <p class="mt-1 text-sm text-slate-600">
                "A locker with an unknown serial registers itself with a key of this tenant (docs/mqtt.md)."
            </p>
            <form class="mt-3 flex flex-wrap items-end gap-2" on:submit=move |ev| {
                ev.prevent_default();
                create.dispatch(key_name.get_untracked());
            }>
                <label class="text-sm">
                    <span class="block text-slate-700">"Name"</span>
                    <input required maxlength="120" data-testid="key-name" class=input
                        prop:value=move || key_name.get() on:input=move |ev| key_name.set(event_target_value(&ev))/>
                </label>
                <button type="submit" data-testid="key-create" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">
                    "Create key"
                </button>
            </form>
            {move || create.value().get().map(|r| match r {
                Ok(k) => {
                    let secret = k.secret.clone();
                    view! {
                        <div role="status" class="mt-3 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm">
                            <p class="font-medium">{format!("Key \u{201c}{}\u{201d}: copy it now, it is shown only once.", k.name)}</p>
                            <div class="mt-2 flex flex-wrap items-center gap-2">
                                <code class="break-all rounded bg-white px-2 py-1 font-mono text-xs" data-testid="key-secret">{k.secret.clone()}</code>
                                <button type="button" data-testid="key-copy" on:click=move |_| copy(&secret)
                                    class="rounded-md border border-slate-300 bg-white px-2 py-1 text-xs font-medium hover:bg-slate-100">
                                    "Copy"
                                </button>
                            </div>
                        </div>
                    }.into_any()
                }
                Err(e) => view! { <p role="alert" class="mt-3 text-sm text-red-800">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

/// The keys, live: a refetch re-renders only this list.
#[component]
fn KeyList(keys: Vec<KeyRow>, revoke: Action<String, Result<(), AppError>>) -> impl IntoView {
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-label="Keys">
            <ul class="mt-4 divide-y divide-slate-100 text-sm" data-testid="keys">
                {keys
                    .into_iter()
                    .map(|k| {
                        let id = k.id.clone();
                        view! {
                            <li class="flex items-center justify-between gap-2 py-2" data-testid="key-row">
                                <span>
                                    <span class="font-medium">{k.name.clone()}</span>
                                    <span class="ml-2 text-xs text-slate-600">{format::utc(k.created_at)}</span>
                                </span>
                                {if k.revoked {
                                    view! { <span class="text-xs text-slate-600">"revoked"</span> }.into_any()
                                } else {
                                    view! {
                                        <button type="button" data-testid="key-revoke" on:click=move |_| { revoke.dispatch(id.clone()); }
                                            class="rounded-md border border-red-300 px-2 py-1 text-xs font-medium text-red-800 hover:bg-red-50">
                                            {format!("Revoke {}", k.name)}
                                        </button>
                                    }.into_any()
                                }}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
}

/// Pre-registering a bank. Outside the live region, so that a refetch
/// (another bank provisioning meanwhile) neither empties the fields being
/// typed nor drops the action whose answer leads to the progress page.
#[component]
fn PreRegisterForm() -> impl IntoView {
    let (serial, name, location, count) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new("6".to_string()),
    );
    let navigate = use_navigate();
    let register = Action::new(move |_: &()| {
        let (s, n, l) = (
            serial.get_untracked(),
            name.get_untracked(),
            location.get_untracked(),
        );
        let c = count.get_untracked().trim().parse::<u32>().unwrap_or(0);
        async move { preregister_bank(s, n, Some(l), c).await }
    });
    Effect::new(move |_| {
        if let Some(Ok(id)) = register.value().get() {
            navigate(
                &format!("/admin/banks/{id}/provisioning"),
                NavigateOptions::default(),
            );
        }
    });
    let input = "mt-1 w-full rounded-md border border-slate-300 px-3 py-1.5";
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-labelledby="pre-h">
            <h2 id="pre-h" class="font-semibold">"Pre-register a bank"</h2>
            <p class="mt-1 text-sm text-slate-600">"Its locker then provisions with its serial alone."</p>
            <form class="mt-3 grid gap-3 sm:grid-cols-4" on:submit=move |ev| {
                ev.prevent_default();
                register.dispatch(());
            }>
                <label class="text-sm"><span class="block text-slate-700">"Serial"</span>
                    <input required maxlength="64" data-testid="pre-serial" class=input prop:value=move || serial.get() on:input=move |ev| serial.set(event_target_value(&ev))/></label>
                <label class="text-sm"><span class="block text-slate-700">"Name"</span>
                    <input required maxlength="120" data-testid="pre-name" class=input prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label class="text-sm"><span class="block text-slate-700">"Location"</span>
                    <input maxlength="120" class=input prop:value=move || location.get() on:input=move |ev| location.set(event_target_value(&ev))/></label>
                <label class="text-sm"><span class="block text-slate-700">"Compartments"</span>
                    <input required type="number" min="1" max="500" class=input prop:value=move || count.get() on:input=move |ev| count.set(event_target_value(&ev))/></label>
                <div class="sm:col-span-4">
                    <button type="submit" data-testid="pre-register" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">"Pre-register"</button>
                </div>
            </form>
            {move || register.value().get().and_then(|r| r.err()).map(|e| view! {
                <p role="alert" class="mt-2 text-sm text-red-800">{e.to_string()}</p>
            })}
        </section>
    }
}

/// The banks on their way, live.
#[component]
fn WaitingList(waiting: Vec<Waiting>) -> impl IntoView {
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-labelledby="wait-h">
            <h2 id="wait-h" class="font-semibold">"On their way"</h2>
            <ul class="mt-2 divide-y divide-slate-100 text-sm" data-testid="waiting">
                {if waiting.is_empty() {
                    view! { <li class="py-2 text-slate-600">"No bank is waiting to be provisioned."</li> }.into_any()
                } else {
                    waiting
                        .into_iter()
                        .map(|w| view! {
                            <li class="flex items-center justify-between py-2" data-testid="waiting-bank" data-serial=w.serial.clone()>
                                <A href=format!("/admin/banks/{}/provisioning", w.id) attr:class="font-medium underline">
                                    {format!("{} ({})", w.name, w.serial)}
                                </A>
                                <span class="text-xs text-slate-600">{format::words(&w.state)}</span>
                            </li>
                        })
                        .collect_view()
                        .into_any()
                }}
            </ul>
        </section>
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressData {
    pub bank_id: String,
    pub name: String,
    pub serial: String,
    /// (step, when) for the steps done, in order.
    pub done: Vec<(String, i64)>,
    /// (reason, detail, when).
    pub failure: Option<(String, Option<String>, i64)>,
    pub complete: bool,
    pub live: Followed,
}

#[server(prefix = "/sfn", endpoint = "provisioning_progress", output = crate::codec::Json)]
pub async fn provisioning_progress(bank_id: String) -> Result<ProgressData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel, identity::tokens::Ability, lockers, provisioning,
    };
    let principal = ssr::require(Ability::LockerRead).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    let id = super::id_of(&bank_id)?;
    let live = super::followed(&services, Channel::LockerBank(id)).await?;
    let not_found = || ssr::refuse(AppError::NotFound, "not_found");
    let bank = lockers::get_bank(&services, tenant, id)
        .await?
        .ok_or_else(not_found)?;
    let p = provisioning::progress(&services, tenant, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(ProgressData {
        bank_id: bank.id.to_string(),
        name: bank.name,
        serial: bank.serial,
        done: p.steps.into_iter().map(|s| (s.step, s.at)).collect(),
        failure: p.failure,
        complete: p.complete || bank.state == "provisioned",
        live,
    })
}

/// The bar's width as a Tailwind class (the page's CSP allows no inline
/// style).
fn bar_width(percent: usize) -> &'static str {
    match percent {
        0..=9 => "w-0",
        10..=29 => "w-1/5",
        30..=49 => "w-2/5",
        50..=69 => "w-3/5",
        70..=89 => "w-4/5",
        _ => "w-full",
    }
}

/// The steps, in order, with their names in words.
const STEPS: [(&str, &str); 5] = [
    ("received", "Registration received"),
    ("validated", "Validated"),
    ("credentials_created", "Credentials created"),
    ("delivered", "Credentials delivered"),
    ("first_heartbeat", "First heartbeat"),
];

#[component]
pub fn ProvisioningProgress() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let params = use_params_map();
    let data = LiveResource::new(
        move || params.get().get("id").unwrap_or_default(),
        provisioning_progress,
    );
    let live = use_live_refetch(move || data.refetch());
    // Whether this page saw the bank incomplete: then, once complete, it
    // moves on to the bank's page (a bank already done just shows it).
    let watched = StoredValue::new(false);
    let navigate = use_navigate();
    view! {
        <A href="/admin/provisioning" attr:class="text-sm text-slate-700 underline">"← Provisioning"</A>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || {
                let navigate = navigate.clone();
                Suspend::new(async move {
                    match data.read().await {
                        Ok(d) => {
                            live.follow(&[(&d.live.channel, d.live.seq)]);
                            if !d.complete {
                                watched.set_value(true);
                            } else if watched.get_value() {
                                let to = format!("/admin/banks/{}", d.bank_id);
                                set_timeout(
                                    move || navigate(&to, NavigateOptions::default()),
                                    std::time::Duration::from_millis(1200),
                                );
                            }
                            view! { <ProgressView d/> }.into_any()
                        }
                        Err(e) => failure(e),
                    }
                })
            }}
        </Transition>
    }
}

#[component]
fn ProgressView(d: ProgressData) -> impl IntoView {
    let done = d.done.len().min(STEPS.len());
    let percent = if d.complete {
        100
    } else {
        done * 100 / STEPS.len()
    };
    let start = d.done.first().map(|(_, at)| *at);
    view! {
        <div class="mt-3" data-testid="progress" data-complete=d.complete.to_string()>
            <PageTitle title=format!("Provisioning {}", d.name) lead=format!("Serial {}", d.serial)/>
            <div
                class="mt-4 h-3 w-full overflow-hidden rounded-full bg-slate-200"
                role="progressbar"
                aria-label="Provisioning progress"
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=percent
            >
                <div class=format!(
                    "h-full {} {}",
                    if d.failure.is_some() && !d.complete { "bg-red-600" } else { "bg-emerald-600" },
                    bar_width(percent),
                )></div>
            </div>
            <p class="mt-2 text-sm" role="status" data-testid="progress-status">
                {if d.complete {
                    "Provisioned: the locker is online.".to_string()
                } else if d.failure.is_some() {
                    "The last attempt failed; the locker can try again.".to_string()
                } else if done == 0 {
                    "Waiting for the locker to register…".to_string()
                } else {
                    format!("{done} of {} steps done…", STEPS.len())
                }}
            </p>
            <ol class="mt-4 space-y-2" data-testid="steps">
                {STEPS
                    .iter()
                    .map(|(key, label)| {
                        let at = d.done.iter().find(|(s, _)| s == key).map(|(_, at)| *at);
                        view! {
                            <li class="flex items-center gap-3 text-sm" data-testid="step" data-step=*key data-done=at.is_some().to_string()>
                                <span
                                    class=if at.is_some() { "h-3 w-3 rounded-full bg-emerald-600" } else { "h-3 w-3 rounded-full border-2 border-slate-300" }
                                    aria-hidden="true"
                                ></span>
                                <span class=if at.is_some() { "font-medium" } else { "text-slate-600" }>{*label}</span>
                                {at.map(|at| view! {
                                    <span class="text-xs tabular-nums text-slate-600">
                                        {format!("{} UTC (+{} ms)", format::clock(at), at - start.unwrap_or(at))}
                                    </span>
                                })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
            {d.failure.clone().filter(|_| !d.complete).map(|(reason, detail, at)| view! {
                <p role="alert" class="mt-4 rounded-md bg-red-50 px-3 py-2 text-sm text-red-800" data-testid="progress-error">
                    {format!("Failed at {} UTC: {}", format::clock(at), format::words(&reason))}
                    {detail.map(|d| format!(" ({d})"))}
                </p>
            })}
            {d.complete.then(|| view! {
                <A href=format!("/admin/banks/{}", d.bank_id) attr:class="mt-4 inline-block text-sm font-medium underline">"Go to the bank"</A>
            })}
        </div>
    }
}
