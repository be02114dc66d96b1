//! The locker banks table (status, last seen as a ticking relative time,
//! firmware, compartments, provisioning state; search, a status filter and
//! pagination; live, throttled, pausable; a bank renamed inline) and a
//! bank's page (its details and compartments in the record editor; its
//! compartments with door, occupancy and latest open status; a CSV import;
//! an admin Open that asks for a reason and shows the command id at once,
//! then the result live; decommission with a confirmation).

use leptos::prelude::*;

use crate::realtime::LiveResource;
use leptos_router::{
    components::A,
    hooks::{use_params_map, use_query_map},
};
use lockstep_wire::{OpenStatus, RecordType};
use serde::{Deserialize, Serialize};

use super::{failure, records::editor::RecordEditor, Followed, PageTitle};
use crate::pages::common::{navigate_on_submit, ticking_now};
use crate::{
    error::AppError,
    format,
    realtime::{
        client::SocketClient,
        table_sync::{use_table_sync, TableLiveBar, TableSync},
        use_live_refetch,
    },
};

pub const PER_PAGE: usize = 25;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BankRow {
    pub id: String,
    pub name: String,
    pub serial: String,
    pub location: Option<String>,
    pub state: String,
    pub online: Option<bool>,
    pub last_seen_at: Option<i64>,
    pub firmware: Option<String>,
    pub compartments: usize,
    /// What a rename names (the version guard).
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankListData {
    pub rows: Vec<BankRow>,
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    /// The server's clock when read (relative times tick from it).
    pub now: i64,
    pub live: Followed,
}

#[cfg(feature = "ssr")]
fn row_of(b: &BankDetail) -> BankRow {
    BankRow {
        id: b.id.clone(),
        name: b.name.clone(),
        serial: b.serial.clone(),
        location: b.location.clone(),
        state: b.state.clone(),
        online: b.online,
        last_seen_at: b.last_seen_at,
        firmware: b.firmware.clone(),
        compartments: b.compartments.len(),
        version: b.version,
    }
}

/// Whether a bank matches the search text and the status filter.
pub fn matches(b: &BankRow, q: &str, status: &str) -> bool {
    let q = q.trim().to_lowercase();
    let text = q.is_empty()
        || b.name.to_lowercase().contains(&q)
        || b.serial.to_lowercase().contains(&q)
        || b.location
            .as_deref()
            .is_some_and(|l| l.to_lowercase().contains(&q));
    let state = match status {
        "online" => b.online == Some(true),
        "offline" => b.online != Some(true) && b.state == "provisioned",
        "provisioning" => b.state != "provisioned" && b.state != "decommissioned",
        "decommissioned" => b.state == "decommissioned",
        _ => true,
    };
    text && state
}

#[server(prefix = "/sfn", endpoint = "bank_list", output = crate::codec::Json)]
pub async fn bank_list(
    q: Option<String>,
    status: Option<String>,
    page: Option<u32>,
) -> Result<BankListData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel, identity::tokens::Ability, lockers, now_ms,
    };
    let principal = ssr::require(Ability::LockerRead).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    let live = super::followed(&services, Channel::TenantLockers(tenant)).await?;
    let all: Vec<BankRow> = lockers::list_banks(&services, tenant)
        .await?
        .into_iter()
        .map(|b| row_of(&BankDetail::from_view(b)))
        .filter(|b| {
            matches(
                b,
                q.as_deref().unwrap_or(""),
                status.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let total = all.len();
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = (page.unwrap_or(1) as usize).clamp(1, pages);
    Ok(BankListData {
        rows: all
            .into_iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE)
            .collect(),
        total,
        page,
        pages,
        now: now_ms(),
        live,
    })
}

fn online_badge(online: Option<bool>, state: &str) -> (&'static str, String) {
    match (state, online) {
        ("decommissioned", _) => (
            "rounded-full bg-slate-200 px-2 py-0.5 text-xs font-medium text-slate-700",
            "decommissioned".into(),
        ),
        (_, Some(true)) => (
            "rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-medium text-emerald-800",
            "online".into(),
        ),
        (_, Some(false)) => (
            "rounded-full bg-red-100 px-2 py-0.5 text-xs font-medium text-red-800",
            "offline".into(),
        ),
        (_, None) => (
            "rounded-full bg-slate-100 px-2 py-0.5 text-xs font-medium text-slate-700",
            "never seen".into(),
        ),
    }
}

#[component]
pub fn Banks() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let query = use_query_map();
    // The first read renders on the server; a filter or a page reads
    // again through it. Live changes refresh `fresh` instead, so the
    // table is never rendered anew: only its changed rows are.
    let data = Resource::new_blocking(
        move || query.get(),
        |q| {
            bank_list(
                q.get("q"),
                q.get("status"),
                q.get("page").and_then(|p| p.parse().ok()),
            )
        },
    );
    let fresh = RwSignal::new(None::<BankListData>);
    let (sync, live) = use_table_sync(move || {
        let q = query.get_untracked();
        leptos::task::spawn_local(async move {
            let page = q.get("page").and_then(|p| p.parse().ok());
            let answer = bank_list(q.get("q"), q.get("status"), page).await;
            // An answer for a search the admin has since left is dropped.
            if let (Ok(l), Some(true)) = (answer, query.try_get_untracked().map(|now| now == q)) {
                fresh.try_set(Some(l));
            }
        });
    });
    view! {
        <PageTitle title="Locker banks" lead="Every bank of the tenant, live."/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(l) => {
                        live.follow(&[(&l.live.channel, l.live.seq)]);
                        fresh.set(None);
                        view! { <BankTable l fresh sync query=query.get_untracked()/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

/// The bank being renamed inline: id, the name typed, the version.
type Rename = Option<(String, String, i64)>;

#[component]
fn BankTable(
    l: BankListData,
    fresh: RwSignal<Option<BankListData>>,
    sync: TableSync,
    query: leptos_router::params::ParamsMap,
) -> impl IntoView {
    let now = ticking_now(l.now);
    let status = query.get("status").unwrap_or_default();
    let q = query.get("q").unwrap_or_default();
    let href = {
        let (status, q) = (status.clone(), q.clone());
        move |page: usize| format!("/admin/banks?q={q}&status={status}&page={page}")
    };
    let prev = (l.page > 1).then(|| href(l.page - 1));
    let next = (l.page < l.pages).then(|| href(l.page + 1));
    let first = StoredValue::new(l.clone());
    let current = Memo::new(move |_| fresh.get().unwrap_or_else(|| first.get_value()));
    let rename = RwSignal::new(None as Rename);
    Effect::new(move |_| sync.set_editing(rename.with(Option::is_some)));
    let save = Action::new_local(move |(id, name, version): &(String, String, i64)| {
        let (id, name, version) = (id.clone(), name.clone(), *version);
        async move {
            let values = vec![("name".to_string(), name)];
            let kind = RecordType::LockerBank.as_str().to_string();
            let r = super::records::save_record(kind, id, version, values).await;
            match &r {
                Ok(_) => {
                    rename.try_set(None);
                    sync.refresh_now();
                }
                // Refused and said why: a second Save is made knowingly,
                // on the version that refused it.
                Err(AppError::Stale(stale)) => {
                    rename.try_update(|r| {
                        if let Some(r) = r.as_mut() {
                            r.2 = stale.version;
                        }
                    });
                }
                Err(_) => {}
            }
            r.map(|_| ())
        }
    });
    view! {
        <form method="GET" action="/admin/banks" on:submit=navigate_on_submit() class="mt-6 flex flex-wrap items-end gap-3" aria-label="Search">
            <label class="text-sm">
                <span class="block text-slate-700">"Search"</span>
                <input type="search" name="q" value=q data-testid="bank-search" placeholder="Name, serial or place" class="mt-1 rounded-md border border-slate-300 px-3 py-1.5"/>
            </label>
            <label class="text-sm">
                <span class="block text-slate-700">"Status"</span>
                <select name="status" data-testid="bank-status" class="mt-1 rounded-md border border-slate-300 px-2 py-1.5">
                    {[("", "Any"), ("online", "Online"), ("offline", "Offline"), ("provisioning", "Provisioning"), ("decommissioned", "Decommissioned")]
                        .into_iter()
                        .map(|(v, label)| view! { <option value=v selected=status == v>{label}</option> })
                        .collect_view()}
                </select>
            </label>
            <button type="submit" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">"Search"</button>
        </form>
        <p class="mt-4 text-sm text-slate-600" data-testid="bank-total">{move || format!("{} bank(s)", current.with(|l| l.total))}</p>
        <TableLiveBar sync/>
        {move || save.value().get().and_then(|r| r.err()).map(|e| view! {
            <p role="alert" class="mt-2 rounded-md bg-red-50 px-3 py-2 text-sm text-red-800" data-testid="rename-error">{e.to_string()}</p>
        })}
        <div class="mt-2 overflow-x-auto rounded-xl border border-slate-200 bg-white" data-testid="bank-table" data-refreshes=move || sync.refreshes.get() data-waiting=move || sync.waiting.get()>
            <table class="w-full min-w-[40rem] text-left text-sm">
                <thead class="text-slate-600">
                    <tr>
                        <th scope="col" class="px-4 py-2 font-medium">"Bank"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Status"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Last seen"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Firmware"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Compartments"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Provisioning"</th>
                    </tr>
                </thead>
                <tbody data-testid="bank-rows">
                    <For each=move || current.get().rows key=|b| b.clone() let:b>
                        <BankLine b now sync rename save/>
                    </For>
                </tbody>
            </table>
        </div>
        <nav aria-label="Pages" class="mt-3 flex items-center gap-3 text-sm">
            {prev.map(|h| view! { <a href=h class="rounded-md border border-slate-300 px-3 py-1.5">"Previous"</a> })}
            <span class="text-slate-600">{format!("Page {} of {}", l.page, l.pages)}</span>
            {next.map(|h| view! { <a href=h class="rounded-md border border-slate-300 px-3 py-1.5">"Next"</a> })}
        </nav>
    }
}

/// One bank's row; its name is renamed in place.
#[component]
fn BankLine(
    b: BankRow,
    now: ReadSignal<i64>,
    sync: TableSync,
    rename: RwSignal<Rename>,
    save: Action<(String, String, i64), Result<(), AppError>>,
) -> impl IntoView {
    let (badge, label) = online_badge(b.online, &b.state);
    let seen = b.last_seen_at;
    let id = b.id.clone();
    let flashed = sync.flashed(id.clone());
    let mine = {
        let id = id.clone();
        move || rename.with(|r| r.as_ref().is_some_and(|(r, _, _)| *r == id))
    };
    let start = {
        let (id, name, version) = (id.clone(), b.name.clone(), b.version);
        move |_| rename.set(Some((id.clone(), name.clone(), version)))
    };
    let href = format!("/admin/banks/{}", b.id);
    let name = b.name.clone();
    let place = format!(
        "{}{}",
        b.serial,
        b.location
            .as_deref()
            .map(|l| format!(" · {l}"))
            .unwrap_or_default()
    );
    let row_class = move || TableSync::row_class(flashed);
    view! {
        <tr class=row_class data-testid="bank-row" data-bank-id=id.clone() data-changed=move || flashed.get().to_string()>
            <td class="px-4 py-2">
                <Show when=mine.clone() fallback=move || {
                    let name = name.clone();
                    view! {
                        <A href=href.clone() attr:class="font-medium underline">{name}</A>
                        <button type="button" data-testid="bank-rename" class="ml-2 text-xs text-slate-600 underline" on:click=start.clone()>"Rename"</button>
                        <span class="block text-xs text-slate-600">{place.clone()}</span>
                    }
                }>
                    <form class="flex flex-wrap items-center gap-2" aria-label="Rename" on:submit=move |ev| {
                        ev.prevent_default();
                        if let Some(r) = rename.get_untracked() {
                            save.dispatch(r);
                        }
                    }>
                        <input required maxlength="200" data-testid="bank-rename-input" aria-label="New name"
                            class="rounded-md border border-slate-300 px-2 py-1"
                            prop:value=move || rename.with(|r| r.as_ref().map(|r| r.1.clone()).unwrap_or_default())
                            on:input=move |ev| rename.update(|r| if let Some(r) = r.as_mut() { r.1 = event_target_value(&ev) })/>
                        <button type="submit" data-testid="bank-rename-save" class="rounded-md bg-indigo-600 px-2 py-1 text-xs font-semibold text-white">"Save"</button>
                        <button type="button" class="text-xs underline" on:click=move |_| rename.set(None)>"Cancel"</button>
                    </form>
                </Show>
            </td>
            <td class="px-4 py-2"><span class=badge data-testid="bank-online">{label}</span></td>
            <td class="px-4 py-2 tabular-nums">{move || format::ago(now.get(), seen)}</td>
            <td class="px-4 py-2">{b.firmware.clone().unwrap_or_else(|| "—".into())}</td>
            <td class="px-4 py-2 tabular-nums">{b.compartments}</td>
            <td class="px-4 py-2">{b.state.clone()}</td>
        </tr>
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompartmentRow {
    pub id: String,
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
    pub door_open: Option<bool>,
    pub occupied: Option<bool>,
    pub status: Option<OpenStatus>,
    pub command_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankDetail {
    pub id: String,
    pub name: String,
    pub serial: String,
    pub location: Option<String>,
    pub state: String,
    pub online: Option<bool>,
    pub last_seen_at: Option<i64>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub provisioning_error: Option<String>,
    pub version: i64,
    pub compartments: Vec<CompartmentRow>,
}

#[cfg(feature = "ssr")]
impl BankDetail {
    fn from_view(b: lockstep_core::lockers::BankView) -> Self {
        BankDetail {
            id: b.id.to_string(),
            name: b.name,
            serial: b.serial,
            location: b.location,
            state: b.state,
            online: b.online,
            last_seen_at: b.last_seen_at,
            model: b.model,
            firmware: b.firmware,
            provisioning_error: b.provisioning_error,
            version: b.version,
            compartments: b
                .compartments
                .into_iter()
                .map(|c| CompartmentRow {
                    id: c.id.to_string(),
                    number: c.number,
                    size: c.size,
                    label: c.label,
                    door_open: c.door_open,
                    occupied: c.occupied,
                    status: c.latest_status,
                    command_id: c.latest_command_id.map(|id| id.to_string()),
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankPageData {
    pub bank: BankDetail,
    pub now: i64,
    pub live: Followed,
}

#[server(prefix = "/sfn", endpoint = "bank_page", output = crate::codec::Json)]
pub async fn bank_page(bank_id: String) -> Result<BankPageData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel, identity::tokens::Ability, lockers, now_ms,
    };
    let principal = ssr::require(Ability::LockerRead).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    let id = super::id_of(&bank_id)?;
    let live = super::followed(&services, Channel::LockerBank(id)).await?;
    let bank = lockers::get_bank(&services, tenant, id)
        .await?
        .ok_or_else(|| ssr::refuse(AppError::NotFound, "not_found"))?;
    Ok(BankPageData {
        bank: BankDetail::from_view(bank),
        now: now_ms(),
        live,
    })
}

/// The answer to an admin Open: the command id at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    pub command_id: String,
    pub status: OpenStatus,
    pub reason: Option<String>,
}

#[server(prefix = "/sfn", endpoint = "admin_open", client = SocketClient, output = crate::codec::Json)]
pub async fn admin_open(compartment_id: String, reason: String) -> Result<Opened, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, now_ms, opens, CoreError};
    let principal = ssr::require(Ability::LockerWrite).await?;
    let services = ssr::services()?;
    let id = super::id_of(&compartment_id)?;
    let caller = ssr::caller(&principal)?;
    let input = opens::OpenCommandInput {
        compartment_id: id,
        override_: true,
        reason: Some(reason),
        ..Default::default()
    };
    match opens::request_open(&services, &caller, input, now_ms()).await {
        Ok(d) => Ok(Opened {
            command_id: d.command_id.to_string(),
            status: d.status,
            reason: d.reason.map(|r| r.as_str().to_string()),
        }),
        Err(CoreError::NotFound) => Err(ssr::refuse(AppError::NotFound, "not_found")),
        Err(e) => Err(e.into()),
    }
}

#[server(prefix = "/sfn", endpoint = "decommission_bank", client = SocketClient, output = crate::codec::Json)]
pub async fn decommission_bank(bank_id: String, reason: String) -> Result<(), AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, lockers, provisioning};
    let principal = ssr::require(Ability::LockerWrite).await?;
    let services = ssr::services()?;
    let id = super::id_of(&bank_id)?;
    let caller = ssr::caller(&principal)?;
    // Another tenant's bank reads as "not found".
    lockers::get_bank(&services, principal.user().tenant_id, id)
        .await?
        .ok_or_else(|| ssr::refuse(AppError::NotFound, "not_found"))?;
    provisioning::decommission(&services, &caller, id, &reason).await?;
    Ok(())
}

/// The compartment an admin is about to open (id, its name): the override
/// form lives outside the live region, so a refetch never resets it.
#[derive(Clone, Copy)]
struct OpenTarget(RwSignal<Option<(String, String)>>);

/// The compartment being edited (its id), in an editor outside the live
/// region.
#[derive(Clone, Copy)]
struct EditTarget(RwSignal<Option<String>>);

#[component]
pub fn BankPage() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let params = use_params_map();
    let bank_id = move || params.get().get("id").unwrap_or_default();
    let data = LiveResource::new(bank_id, bank_page);
    let live = use_live_refetch(move || data.refetch());
    let target = RwSignal::new(None::<(String, String)>);
    provide_context(OpenTarget(target));
    let editing = RwSignal::new(None::<String>);
    provide_context(EditTarget(editing));
    let open = Action::new(move |(id, reason): &(String, String)| {
        let (id, reason) = (id.clone(), reason.clone());
        async move { admin_open(id, reason).await }
    });
    let decommission = Action::new(move |reason: &String| {
        let (id, reason) = (bank_id(), reason.clone());
        async move {
            let r = decommission_bank(id, reason).await;
            data.refetch();
            r
        }
    });
    view! {
        <A href="/admin/banks" attr:class="text-sm text-slate-700 underline">"← Locker banks"</A>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(d) => {
                        live.follow(&[(&d.live.channel, d.live.seq)]);
                        view! { <BankView d/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
        <OverrideForm target open/>
        <Show when=move || editing.get().is_some()>
            <RecordEditor record_type=RecordType::Compartment record_id=Signal::derive(move || editing.get().unwrap_or_default()) heading="Edit compartment"/>
            <button type="button" class="mt-2 text-sm underline" on:click=move |_| editing.set(None)>"Close the compartment editor"</button>
        </Show>
        <RecordEditor record_type=RecordType::LockerBank record_id=Signal::derive(bank_id) heading="Details"/>
        <ImportForm bank_id=Signal::derive(bank_id)/>
        <section class="mt-10 rounded-xl border border-red-200 bg-white p-4" aria-labelledby="decommission-h">
            <h2 id="decommission-h" class="font-semibold text-red-800">"Decommission"</h2>
            <p class="mt-1 text-sm text-slate-700">
                "Takes the bank out of service: its broker account is disabled and a connected locker is disconnected."
            </p>
            <Confirm action=decommission label="Decommission" testid="decommission"/>
            {move || decommission.value().get().map(|r| match r {
                Ok(()) => view! { <p role="status" class="mt-2 text-sm text-emerald-800" data-testid="decommissioned">"Decommissioned."</p> }.into_any(),
                Err(e) => view! { <p role="alert" class="mt-2 text-sm text-red-800">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

/// The admin override: a reason, then the command id at once; the result
/// follows live on the compartment's card (and as a toast).
#[component]
fn OverrideForm(
    target: RwSignal<Option<(String, String)>>,
    open: Action<(String, String), Result<Opened, AppError>>,
) -> impl IntoView {
    let reason = RwSignal::new(String::new());
    view! {
        <Show when=move || target.get().is_some()>
            <form
                class="mt-6 flex flex-wrap items-end gap-2 rounded-xl border border-indigo-200 bg-indigo-50 p-4"
                aria-label="Open with an override"
                on:submit=move |ev| {
                    ev.prevent_default();
                    if let Some((id, _)) = target.get_untracked() {
                        open.dispatch((id, reason.get_untracked()));
                    }
                    target.set(None);
                    reason.set(String::new());
                }
            >
                <label class="text-sm">
                    <span class="block text-slate-700">
                        {move || target.get().map(|(_, name)| format!("Reason to open {name}")).unwrap_or_default()}
                    </span>
                    <input required maxlength="500" data-testid="open-reason" class="mt-1 rounded-md border border-slate-300 px-3 py-1.5"
                        prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                </label>
                <button type="submit" data-testid="open-confirm" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">"Open now"</button>
                <button type="button" on:click=move |_| target.set(None) class="rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm">"Cancel"</button>
            </form>
        </Show>
        <div role="status" class="mt-3">
            {move || open.value().get().map(|r| match r {
                Ok(o) => view! {
                    <p class="text-sm" data-testid="open-answer" data-status=o.status.as_str() data-command-id=o.command_id.clone()>
                        {format!("{}: command {}", o.status.as_str(), o.command_id)}
                        {o.reason.map(|r| format!(" ({})", format::words(&r)))}
                    </p>
                }.into_any(),
                Err(e) => view! { <p class="text-sm text-red-800">{e.to_string()}</p> }.into_any(),
            })}
        </div>
    }
}

fn yes_no(v: Option<bool>, yes: &'static str, no: &'static str) -> &'static str {
    match v {
        Some(true) => yes,
        Some(false) => no,
        None => "—",
    }
}

#[component]
fn BankView(d: BankPageData) -> impl IntoView {
    let now = ticking_now(d.now);
    let b = d.bank;
    let (badge, label) = online_badge(b.online, &b.state);
    let seen = b.last_seen_at;
    view! {
        <div class="mt-3">
            <PageTitle title=b.name.clone() lead=format!("{} · {}", b.serial, b.location.clone().unwrap_or_default())/>
            <dl class="mt-4 grid grid-cols-2 gap-3 text-sm sm:grid-cols-4">
                <div><dt class="text-slate-600">"Status"</dt><dd><span class=badge data-testid="bank-online">{label}</span></dd></div>
                <div><dt class="text-slate-600">"Last seen"</dt><dd class="tabular-nums">{move || format::ago(now.get(), seen)}</dd></div>
                <div><dt class="text-slate-600">"Firmware"</dt><dd>{b.firmware.clone().unwrap_or_else(|| "—".into())}</dd></div>
                <div><dt class="text-slate-600">"Provisioning"</dt><dd data-testid="bank-state">
                    <A href=format!("/admin/banks/{}/provisioning", b.id) attr:class="underline">{b.state.clone()}</A>
                </dd></div>
            </dl>
            {b.provisioning_error.clone().map(|e| view! {
                <p role="alert" class="mt-3 rounded-md bg-red-50 px-3 py-2 text-sm text-red-800">{format!("Last provisioning attempt failed: {}", format::words(&e))}</p>
            })}
            <h2 class="mt-8 font-semibold">"Compartments"</h2>
            <ul class="mt-2 grid gap-3 sm:grid-cols-2 xl:grid-cols-3" data-testid="compartments">
                {b.compartments
                    .into_iter()
                    .map(|c| view! { <CompartmentCard c/> })
                    .collect_view()}
            </ul>
        </div>
    }
}

/// A button that asks for a reason and a confirmation before `action`.
#[component]
fn Confirm(
    action: Action<String, Result<(), AppError>>,
    label: &'static str,
    testid: &'static str,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    view! {
        <Show
            when=move || asking.get()
            fallback=move || view! {
                <button type="button" data-testid=testid on:click=move |_| asking.set(true)
                    class="mt-3 rounded-md border border-red-300 px-3 py-1.5 text-sm font-medium text-red-800 hover:bg-red-50">
                    {label}
                </button>
            }
        >
            <form class="mt-3 flex flex-wrap items-end gap-2" on:submit=move |ev| {
                ev.prevent_default();
                action.dispatch(reason.get_untracked());
                asking.set(false);
            }>
                <label class="text-sm">
                    <span class="block text-slate-700">"Reason (required)"</span>
                    <input required maxlength="500" data-testid=format!("{testid}-reason") class="mt-1 rounded-md border border-slate-300 px-3 py-1.5"
                        prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                </label>
                <button type="submit" data-testid=format!("{testid}-confirm") class="rounded-md bg-red-700 px-3 py-1.5 text-sm font-semibold text-white hover:bg-red-600">
                    {format!("Yes, {}", label.to_lowercase())}
                </button>
                <button type="button" on:click=move |_| asking.set(false) class="rounded-md border border-slate-300 px-3 py-1.5 text-sm">"Cancel"</button>
            </form>
        </Show>
    }
}

#[component]
fn CompartmentCard(c: CompartmentRow) -> impl IntoView {
    let target = use_context::<OpenTarget>().map(|t| t.0);
    let edit = use_context::<EditTarget>().map(|t| t.0);
    let edit_id = c.id.clone();
    let title = match &c.label {
        Some(l) => format!("#{} {l}", c.number),
        None => format!("#{}", c.number),
    };
    let name = format!("compartment {title}");
    let id = c.id.clone();
    let status = c.status;
    let command = c.command_id.clone();
    view! {
        <li class="rounded-xl border border-slate-200 bg-white p-4" data-testid=format!("compartment-{}", c.number)>
            <div class="flex items-start justify-between gap-2">
                <div>
                    <p class="font-medium">{title}</p>
                    <p class="text-xs text-slate-600">
                        {format!("{} · door {} · {}", c.size, yes_no(c.door_open, "open", "closed"), yes_no(c.occupied, "occupied", "empty"))}
                    </p>
                </div>
                <div role="status" class="text-right">
                    {status.map(|s| view! {
                        <span class=format::status_badge(s) data-testid="open-status" data-status=s.as_str()>{s.as_str()}</span>
                    })}
                    {command.map(|id| view! {
                        <a href=format!("/admin/commands/{id}") class="mt-1 block font-mono text-xs text-slate-600 underline" data-testid="latest-command">{id[..8].to_string()}</a>
                    })}
                </div>
            </div>
            <button type="button" data-testid="admin-open" aria-label=format!("Open {name}")
                on:click=move |_| {
                    if let Some(t) = target {
                        t.set(Some((id.clone(), name.clone())));
                    }
                }
                class="mt-3 rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">
                "Open"
            </button>
            <button type="button" data-testid="compartment-edit"
                on:click=move |_| {
                    if let Some(e) = edit {
                        e.set(Some(edit_id.clone()));
                    }
                }
                class="ml-2 mt-3 rounded-md border border-slate-300 px-3 py-1.5 text-sm">
                "Edit"
            </button>
        </li>
    }
}

/// Compartments from CSV (`number,size,label`), through the API: one
/// summary envelope for the whole import, so open pages refresh once.
#[component]
fn ImportForm(bank_id: Signal<String>) -> impl IntoView {
    let csv = RwSignal::new(String::new());
    let import = Action::new_local(move |_: &()| {
        let (id, body) = (bank_id.get_untracked(), csv.get_untracked());
        async move { import_csv(id, body).await }
    });
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-labelledby="import-h">
            <h2 id="import-h" class="font-semibold">"Import compartments"</h2>
            <p class="mt-1 text-sm text-slate-700">
                "CSV with the columns number, size and label. A new number adds a compartment; an existing one is updated. All rows or none."
            </p>
            <form class="mt-2" on:submit=move |ev| {
                ev.prevent_default();
                import.dispatch(());
            }>
                <textarea data-testid="import-csv" rows="4" required placeholder="number,size,label&#10;1,small,Parcels"
                    class="w-full rounded-md border border-slate-300 px-3 py-1.5 font-mono text-sm"
                    prop:value=move || csv.get() on:input=move |ev| csv.set(event_target_value(&ev))></textarea>
                <button type="submit" data-testid="import-submit" disabled=move || import.pending().get()
                    class="mt-2 rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500 disabled:opacity-50">
                    "Import"
                </button>
            </form>
            <p role="status" class="mt-2 text-sm" data-testid="import-result">
                {move || import.value().get().map(|r| match r {
                    Ok(m) => m,
                    Err(m) => m,
                })}
            </p>
        </section>
    }
}

/// `POST /api/v1/locker-banks/{id}/compartments/import`: what it did, or
/// why not, in words.
async fn import_csv(bank_id: String, body: String) -> Result<String, String> {
    #[cfg(feature = "hydrate")]
    {
        #[derive(serde::Deserialize)]
        struct Summary {
            added: i64,
            updated: i64,
            unchanged: i64,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            message: String,
        }
        #[derive(serde::Deserialize)]
        struct Refusal {
            error: Detail,
        }
        let url = format!("/api/v1/locker-banks/{bank_id}/compartments/import");
        let answer = gloo_net::http::Request::post(&url)
            .header("Content-Type", "text/csv")
            .header("Accept", "application/json")
            .body(body)
            .map_err(|e| e.to_string())?
            .send()
            .await
            .map_err(|e| format!("Could not reach the server ({e})."))?;
        if answer.ok() {
            let s: Summary = answer.json().await.map_err(|e| e.to_string())?;
            Ok(format!(
                "Imported: {} added, {} updated, {} unchanged.",
                s.added, s.updated, s.unchanged
            ))
        } else {
            let r: Option<Refusal> = answer.json().await.ok();
            Err(r
                .map(|r| r.error.message)
                .unwrap_or_else(|| "The import was refused.".into()))
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (bank_id, body);
        Err("Importing needs the browser.".into())
    }
}
