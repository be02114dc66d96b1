//! The command history (every open request of the tenant, newest first,
//! filtered by status, bank, user and date range, paginated, new rows
//! arriving live and highlighted) and a command's timeline (requested,
//! authorized or denied, sent, opened or failed, a late result; with
//! times, the actor and an override's reason).

use std::collections::{HashMap, HashSet};

use leptos::prelude::*;

use crate::realtime::LiveResource;
use leptos_router::{
    components::A,
    hooks::{use_params_map, use_query_map},
};
use lockstep_wire::OpenStatus;
use serde::{Deserialize, Serialize};

use super::{failure, Followed, PageTitle};
use crate::pages::common::navigate_on_submit;
use crate::{error::AppError, format, realtime::use_live_refetch};

/// Rows per page.
pub const PER_PAGE: u32 = 25;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRow {
    pub command_id: String,
    pub requested_at: i64,
    pub bank_id: String,
    pub bank_name: String,
    pub compartment: Option<i64>,
    pub user_name: String,
    pub status: OpenStatus,
    /// The denial or failure reason, in its wire name.
    pub reason: Option<String>,
    pub override_: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandPage {
    pub rows: Vec<CommandRow>,
    pub total: i64,
    pub page: u32,
    pub pages: u32,
    pub banks: Vec<Choice>,
    pub users: Vec<Choice>,
    pub live: Followed,
}

/// Names of the tenant's banks, compartments and users, for rows.
#[cfg(feature = "ssr")]
pub(crate) struct Names {
    banks: std::collections::HashMap<String, String>,
    compartments: std::collections::HashMap<String, i64>,
    users: std::collections::HashMap<String, String>,
    pub bank_choices: Vec<Choice>,
    pub user_choices: Vec<Choice>,
}

#[cfg(feature = "ssr")]
impl Names {
    pub(crate) async fn load(
        services: &lockstep_core::Services,
        tenant: lockstep_core::UuidAlias,
    ) -> Result<Self, AppError> {
        use lockstep_core::{identity::accounts, lockers};
        let banks = lockers::list_banks(services, tenant).await?;
        let users = accounts::list_users(&services.db, tenant).await?;
        Ok(Names {
            compartments: banks
                .iter()
                .flat_map(|b| b.compartments.iter().map(|c| (c.id.to_string(), c.number)))
                .collect(),
            bank_choices: banks
                .iter()
                .map(|b| Choice {
                    id: b.id.to_string(),
                    name: b.name.clone(),
                })
                .collect(),
            banks: banks
                .into_iter()
                .map(|b| (b.id.to_string(), b.name))
                .collect(),
            user_choices: users
                .iter()
                .map(|u| Choice {
                    id: u.id.to_string(),
                    name: format!("{} ({})", u.name, u.email),
                })
                .collect(),
            users: users
                .into_iter()
                .map(|u| (u.id.to_string(), u.name))
                .collect(),
        })
    }

    pub(crate) fn bank(&self, id: &str) -> String {
        self.banks.get(id).cloned().unwrap_or_else(|| "?".into())
    }

    pub(crate) fn user(&self, id: &str) -> String {
        self.users.get(id).cloned().unwrap_or_else(|| "?".into())
    }

    pub(crate) fn row(&self, v: &lockstep_core::opens::OpenRequestView) -> CommandRow {
        CommandRow {
            command_id: v.command_id.to_string(),
            requested_at: v.requested_at,
            bank_id: v.locker_bank_id.to_string(),
            bank_name: self.bank(&v.locker_bank_id.to_string()),
            compartment: self
                .compartments
                .get(&v.compartment_id.to_string())
                .copied(),
            user_name: self.user(&v.user_id.to_string()),
            status: v.status,
            reason: v
                .denial_reason
                .map(|r| r.as_str().to_string())
                .or_else(|| v.failure_reason.map(|r| r.as_str().to_string())),
            override_: v.override_,
        }
    }
}

#[server(prefix = "/sfn", endpoint = "command_history", output = crate::codec::Json)]
pub async fn command_history(
    status: Option<String>,
    bank: Option<String>,
    user: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<u32>,
) -> Result<CommandPage, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{eventstore::channels::Channel, identity::tokens::Ability, opens};
    let principal = ssr::require(Ability::LockerRead).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    let some = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let invalid = |what: &str| {
        ssr::refuse(
            AppError::Invalid(format!("{what} is not valid.")),
            "bad_filter",
        )
    };
    let filter = opens::HistoryFilter {
        status: some(status)
            .map(|s| s.parse::<OpenStatus>().map_err(|_| invalid("The status")))
            .transpose()?,
        locker_bank: some(bank)
            .map(|s| s.parse().map_err(|_| invalid("The bank")))
            .transpose()?,
        user: some(user)
            .map(|s| s.parse().map_err(|_| invalid("The user")))
            .transpose()?,
        from: some(from)
            .map(|s| format::day_start_ms(&s).ok_or_else(|| invalid("The start date")))
            .transpose()?,
        // Through the end of the `to` day.
        to: some(to)
            .map(|s| {
                format::day_start_ms(&s)
                    .map(|d| d + 86_400_000)
                    .ok_or_else(|| invalid("The end date"))
            })
            .transpose()?,
        page: i64::from(page.unwrap_or(1).max(1)),
        per_page: i64::from(PER_PAGE),
    };
    let live = super::followed(&services, Channel::TenantOpenRequests(tenant)).await?;
    let (views, total) = opens::history(&services, tenant, &filter).await?;
    let names = Names::load(&services, tenant).await?;
    Ok(CommandPage {
        rows: views.iter().map(|v| names.row(v)).collect(),
        total,
        page: filter.page as u32,
        pages: ((total + i64::from(PER_PAGE) - 1) / i64::from(PER_PAGE)).max(1) as u32,
        banks: names.bank_choices,
        users: names.user_choices,
        live,
    })
}

/// The query string with `page` set to `page`.
fn page_href(query: &leptos_router::params::ParamsMap, page: u32) -> String {
    let mut parts: Vec<String> = ["status", "bank", "user", "from", "to"]
        .iter()
        .filter_map(|k| {
            query
                .get(k)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", urlencode(&v)))
        })
        .collect();
    parts.push(format!("page={page}"));
    format!("/admin/commands?{}", parts.join("&"))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The filter form's values, owned by the page: a live refetch re-renders
/// the form from these (not from the URL), so a half-made choice stays.
/// Reset from the URL whenever it changes (a filter applied, a page link).
#[derive(Clone, Copy)]
struct Filters([RwSignal<String>; 5]);

const FILTER_KEYS: [&str; 5] = ["status", "bank", "user", "from", "to"];

impl Filters {
    fn new(query: &leptos_router::params::ParamsMap) -> Self {
        let f = Filters(std::array::from_fn(|_| RwSignal::new(String::new())));
        f.reset(query);
        f
    }

    fn reset(&self, query: &leptos_router::params::ParamsMap) {
        for (signal, key) in self.0.iter().zip(FILTER_KEYS) {
            signal.set(query.get(key).unwrap_or_default());
        }
    }

    fn get(&self, key: &str) -> String {
        FILTER_KEYS
            .iter()
            .position(|k| *k == key)
            .map(|i| self.0[i].get_untracked())
            .unwrap_or_default()
    }

    fn setter(&self, key: &str) -> impl Fn(leptos::ev::Event) + 'static {
        let signal = FILTER_KEYS
            .iter()
            .position(|k| *k == key)
            .map(|i| self.0[i]);
        move |ev| {
            if let Some(s) = signal {
                s.set(event_target_value(&ev));
            }
        }
    }
}

#[component]
pub fn Commands() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let query = use_query_map();
    let filters = Filters::new(&query.get_untracked());
    Effect::new(move |_| filters.reset(&query.get()));
    let data = LiveResource::new(
        move || query.get(),
        |q| {
            command_history(
                q.get("status"),
                q.get("bank"),
                q.get("user"),
                q.get("from"),
                q.get("to"),
                q.get("page").and_then(|p| p.parse().ok()),
            )
        },
    );
    let live = use_live_refetch(move || data.refetch());
    // Rows shown so far and their status: after the first load, a row not
    // among them arrived live (`data-new`), and a row that is new or whose
    // status moved is highlighted for this render.
    let seen = StoredValue::new(HashMap::<String, OpenStatus>::new());
    let arrived = StoredValue::new(HashSet::<String>::new());
    let loaded = StoredValue::new(false);
    view! {
        <PageTitle title="Commands" lead="Every open request, newest first."/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(p) => {
                        live.follow(&[(&p.live.channel, p.live.seq)]);
                        let first = !loaded.get_value();
                        loaded.set_value(true);
                        let mut changed = HashSet::new();
                        for r in &p.rows {
                            let before = seen.with_value(|s| s.get(&r.command_id).copied());
                            if !first && before.is_none() {
                                arrived.update_value(|a| {
                                    a.insert(r.command_id.clone());
                                });
                            }
                            if !first && before != Some(r.status) {
                                changed.insert(r.command_id.clone());
                            }
                        }
                        seen.update_value(|s| {
                            s.extend(p.rows.iter().map(|r| (r.command_id.clone(), r.status)))
                        });
                        let live = arrived.get_value();
                        view! { <History p changed live filters query=query.get_untracked()/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

#[component]
fn History(
    p: CommandPage,
    /// New or moved since the last render: highlighted.
    changed: HashSet<String>,
    /// Arrived after the page loaded.
    live: HashSet<String>,
    filters: Filters,
    query: leptos_router::params::ParamsMap,
) -> impl IntoView {
    let value = |key: &str| filters.get(key);
    let (status_v, bank_v, user_v) = (value("status"), value("bank"), value("user"));
    let (from_v, to_v) = (value("from"), value("to"));
    let statuses = [
        OpenStatus::Accepted,
        OpenStatus::Denied,
        OpenStatus::Sent,
        OpenStatus::Opened,
        OpenStatus::Failed,
    ];
    let prev = (p.page > 1).then(|| page_href(&query, p.page - 1));
    let next = (p.page < p.pages).then(|| page_href(&query, p.page + 1));
    view! {
        <form method="GET" action="/admin/commands" on:submit=navigate_on_submit() class="mt-6 flex flex-wrap items-end gap-3 rounded-xl border border-slate-200 bg-white p-4" aria-label="Filters">
            <label class="text-sm">
                <span class="block text-slate-700">"Status"</span>
                <select name="status" data-testid="filter-status" on:change=filters.setter("status") class="mt-1 rounded-md border border-slate-300 px-2 py-1.5">
                    <option value="" selected=status_v.is_empty()>"Any"</option>
                    {statuses
                        .iter()
                        .map(|s| view! { <option value=s.as_str() selected=status_v == s.as_str()>{s.as_str()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label class="text-sm">
                <span class="block text-slate-700">"Bank"</span>
                <select name="bank" data-testid="filter-bank" on:change=filters.setter("bank") class="mt-1 max-w-[12rem] rounded-md border border-slate-300 px-2 py-1.5">
                    <option value="" selected=bank_v.is_empty()>"Any"</option>
                    {p.banks
                        .iter()
                        .map(|b| view! { <option value=b.id.clone() selected=bank_v == b.id>{b.name.clone()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label class="text-sm">
                <span class="block text-slate-700">"User"</span>
                <select name="user" data-testid="filter-user" on:change=filters.setter("user") class="mt-1 max-w-[14rem] rounded-md border border-slate-300 px-2 py-1.5">
                    <option value="" selected=user_v.is_empty()>"Anyone"</option>
                    {p.users
                        .iter()
                        .map(|u| view! { <option value=u.id.clone() selected=user_v == u.id>{u.name.clone()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label class="text-sm">
                <span class="block text-slate-700">"From"</span>
                <input type="date" name="from" value=from_v on:input=filters.setter("from") class="mt-1 rounded-md border border-slate-300 px-2 py-1"/>
            </label>
            <label class="text-sm">
                <span class="block text-slate-700">"To"</span>
                <input type="date" name="to" value=to_v on:input=filters.setter("to") class="mt-1 rounded-md border border-slate-300 px-2 py-1"/>
            </label>
            <button type="submit" data-testid="filter-apply" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">
                "Filter"
            </button>
            <a href="/admin/commands" class="text-sm text-slate-700 underline">"Clear"</a>
        </form>
        <p class="mt-4 text-sm text-slate-600" role="status" data-testid="command-total" data-total=p.total>
            {format!("{} command(s)", p.total)}
        </p>
        <div class="mt-2 overflow-x-auto rounded-xl border border-slate-200 bg-white">
            <table class="w-full min-w-[40rem] text-left text-sm">
                <thead class="text-slate-600">
                    <tr>
                        <th scope="col" class="px-4 py-2 font-medium">"Requested"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Compartment"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"User"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Status"</th>
                        <th scope="col" class="px-4 py-2 font-medium">"Command"</th>
                    </tr>
                </thead>
                <tbody data-testid="command-rows">
                    {p.rows
                        .into_iter()
                        .map(|r| {
                            let is_new = live.contains(&r.command_id);
                            let moved = changed.contains(&r.command_id);
                            let reason = r.reason.as_deref().map(format::words);
                            let short = r.command_id[..8].to_string();
                            let timeline = format!("/admin/commands/{}", r.command_id);
                            view! {
                                <tr
                                    class=if moved { "row-new border-t border-slate-100" } else { "border-t border-slate-100" }
                                    data-testid="command-row"
                                    data-command-id=r.command_id.clone()
                                    data-status=r.status.as_str()
                                    data-new=is_new.to_string()
                                >
                                    <td class="whitespace-nowrap px-4 py-2 tabular-nums">{format::utc(r.requested_at)}</td>
                                    <td class="px-4 py-2">
                                        <a href=format!("/admin/banks/{}", r.bank_id) class="underline">{r.bank_name.clone()}</a>
                                        {r.compartment.map(|n| format!(" · #{n}"))}
                                    </td>
                                    <td class="px-4 py-2">{r.user_name.clone()}</td>
                                    <td class="px-4 py-2">
                                        <span class=format::status_badge(r.status)>{r.status.as_str()}</span>
                                        {reason.map(|r| view! { <span class="ml-1 text-xs text-slate-600">{r}</span> })}
                                        {r.override_.then(|| view! { <span class="ml-1 text-xs font-medium text-indigo-700">"override"</span> })}
                                    </td>
                                    <td class="px-4 py-2 font-mono text-xs">
                                        <A href=timeline attr:class="underline">{short}</A>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
        <nav aria-label="Pages" class="mt-3 flex items-center gap-3 text-sm">
            {prev.map(|h| view! { <a href=h class="rounded-md border border-slate-300 px-3 py-1.5" data-testid="page-prev">"Previous"</a> })}
            <span class="text-slate-600">{format!("Page {} of {}", p.page, p.pages)}</span>
            {next.map(|h| view! { <a href=h class="rounded-md border border-slate-300 px-3 py-1.5" data-testid="page-next">"Next"</a> })}
        </nav>
    }
}

/// One step of a command's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub at: i64,
    pub detail: Option<String>,
    pub bad: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub command_id: String,
    pub status: OpenStatus,
    pub bank_id: String,
    pub bank_name: String,
    pub compartment: Option<i64>,
    pub user_name: String,
    pub actor_name: String,
    pub override_reason: Option<String>,
    pub steps: Vec<Step>,
    pub live: Followed,
}

#[server(prefix = "/sfn", endpoint = "command_timeline", output = crate::codec::Json)]
pub async fn command_timeline(command_id: String) -> Result<Timeline, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{eventstore::channels::Channel, identity::tokens::Ability, opens};
    let principal = ssr::require(Ability::LockerRead).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    let id = super::id_of(&command_id)?;
    let caller = ssr::caller(&principal)?;
    let live = super::followed(&services, Channel::TenantOpenRequests(tenant)).await?;
    // Another tenant's command reads as "not found", as a missing one.
    let v = opens::get_open_request(&services, &caller, id)
        .await?
        .filter(|v| v.tenant_id == tenant)
        .ok_or_else(|| ssr::refuse(AppError::NotFound, "not_found"))?;
    let names = Names::load(&services, tenant).await?;
    let row = names.row(&v);
    let mut steps = vec![Step {
        name: "requested".into(),
        at: v.requested_at,
        detail: None,
        bad: false,
    }];
    let mut add = |name: &str, at: Option<i64>, detail: Option<String>, bad: bool| {
        if let Some(at) = at {
            steps.push(Step {
                name: name.into(),
                at,
                detail,
                bad,
            });
        }
    };
    add("authorized", v.authorized_at, None, false);
    add(
        "denied",
        v.denied_at,
        v.denial_reason.map(|r| format::words(r.as_str())),
        true,
    );
    add("sent", v.sent_at, None, false);
    add("opened", v.opened_at, None, false);
    add(
        "failed",
        v.failed_at,
        v.failure_reason.map(|r| {
            let reason = format::words(r.as_str());
            match &v.failure_detail {
                Some(d) => format!("{reason}: {d}"),
                None => reason,
            }
        }),
        true,
    );
    add(
        "late result",
        v.late_result_at,
        v.late_result.clone(),
        false,
    );
    steps.sort_by_key(|s| s.at);
    Ok(Timeline {
        command_id: v.command_id.to_string(),
        status: v.status,
        bank_id: row.bank_id,
        bank_name: row.bank_name,
        compartment: row.compartment,
        user_name: row.user_name,
        actor_name: names.user(&v.actor_id.to_string()),
        override_reason: v.override_reason.clone(),
        steps,
        live,
    })
}

#[component]
pub fn CommandTimeline() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let params = use_params_map();
    let data = LiveResource::new(
        move || params.get().get("id").unwrap_or_default(),
        command_timeline,
    );
    let live = use_live_refetch(move || data.refetch());
    view! {
        <A href="/admin/commands" attr:class="text-sm text-slate-700 underline">"← Commands"</A>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(t) => {
                        live.follow(&[(&t.live.channel, t.live.seq)]);
                        view! { <TimelineView t/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

#[component]
fn TimelineView(t: Timeline) -> impl IntoView {
    let start = t.steps.first().map(|s| s.at).unwrap_or(0);
    view! {
        <div class="mt-3">
            <PageTitle
                title=format!("Command {}", &t.command_id[..8])
                lead=format!(
                    "{}{} · for {} · by {}",
                    t.bank_name,
                    t.compartment.map(|n| format!(" #{n}")).unwrap_or_default(),
                    t.user_name,
                    t.actor_name,
                )
            />
            <p class="mt-2 font-mono text-xs text-slate-600" data-testid="command-id">{t.command_id.clone()}</p>
            <p class="mt-2" role="status">
                <span class=format::status_badge(t.status) data-testid="timeline-status" data-status=t.status.as_str()>
                    {t.status.as_str()}
                </span>
            </p>
            {t.override_reason.clone().map(|r| view! {
                <p class="mt-2 text-sm"><span class="font-medium text-indigo-700">"Override: "</span>{r}</p>
            })}
            <ol class="mt-6 border-l-2 border-slate-200 pl-4" data-testid="timeline">
                {t.steps
                    .into_iter()
                    .map(|s| {
                        let offset = s.at - start;
                        view! {
                            <li class="relative mb-4" data-testid="timeline-step" data-step=s.name.clone()>
                                <span
                                    class=if s.bad { "absolute -left-[1.4rem] top-1 h-3 w-3 rounded-full bg-red-600" } else { "absolute -left-[1.4rem] top-1 h-3 w-3 rounded-full bg-emerald-600" }
                                    aria-hidden="true"
                                ></span>
                                <p class="text-sm font-medium">{s.name.clone()}</p>
                                <p class="text-xs tabular-nums text-slate-600">
                                    {format!("{} UTC (+{} ms)", format::clock(s.at), offset)}
                                </p>
                                {s.detail.map(|d| view! { <p class="text-sm text-slate-700">{d}</p> })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
        </div>
    }
}
