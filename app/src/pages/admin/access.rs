//! Access: who may open which compartment, and when. An admin grants a
//! compartment to a user with an optional validity window (times in UTC)
//! and revokes grants; the list is live from `private-tenant.{id}.lockers`,
//! which carries every grant and revocation of the tenant.

use leptos::prelude::*;

use crate::realtime::LiveResource;
use serde::{Deserialize, Serialize};

use super::{
    failure,
    records::{editor::RecordEditor, RecordType},
    Followed, PageTitle,
};
use crate::{
    error::AppError,
    format,
    realtime::{
        client::SocketClient,
        table_sync::{use_table_sync, TableLiveBar},
    },
};

/// A grant as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRow {
    pub id: String,
    pub compartment_id: String,
    pub bank_id: String,
    /// "Bank name · #3".
    pub place: String,
    pub user_email: String,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    /// `active`, `scheduled`, `expired` or `revoked`.
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessData {
    pub grants: Vec<GrantRow>,
    /// (compartment id, "Bank name · #3") for the grant form.
    pub compartments: Vec<(String, String)>,
    /// The enabled accounts' emails, for the grant form.
    pub users: Vec<String>,
    pub live: Followed,
}

/// A grant's state at `now`.
pub fn grant_state(
    revoked: bool,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    now: i64,
) -> &'static str {
    if revoked {
        "revoked"
    } else if valid_until.is_some_and(|u| u <= now) {
        "expired"
    } else if valid_from.is_some_and(|f| f > now) {
        "scheduled"
    } else {
        "active"
    }
}

#[server(prefix = "/sfn", endpoint = "access_overview", output = crate::codec::Json)]
pub async fn access_overview(include_revoked: bool) -> Result<AccessData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel,
        identity::{accounts, tokens::Ability},
        lockers, now_ms,
    };
    let principal = ssr::require(Ability::GrantWrite).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    // Read the head first: what changes after it arrives as an envelope.
    let live = super::followed(&services, Channel::TenantLockers(tenant)).await?;
    let now = now_ms();
    let grants = lockers::list_tenant_grants(&services, tenant, include_revoked)
        .await?
        .into_iter()
        .map(|t| GrantRow {
            state: grant_state(
                t.grant.revoked_at.is_some(),
                t.grant.valid_from,
                t.grant.valid_until,
                now,
            )
            .to_string(),
            id: t.grant.id.to_string(),
            compartment_id: t.grant.compartment_id.to_string(),
            bank_id: t.bank_id.to_string(),
            place: format!("{} · #{}", t.bank_name, t.compartment_number),
            user_email: t.grant.user_email,
            valid_from: t.grant.valid_from,
            valid_until: t.grant.valid_until,
        })
        .collect();
    let compartments = lockers::list_banks(&services, tenant)
        .await?
        .into_iter()
        .filter(|b| b.state != "decommissioned")
        .flat_map(|b| {
            b.compartments
                .into_iter()
                .map(move |c| (c.id.to_string(), format!("{} · #{}", b.name, c.number)))
        })
        .collect();
    let users = accounts::list_accounts(&services.db, tenant)
        .await?
        .into_iter()
        .filter(|a| a.disabled_at.is_none())
        .map(|a| a.user.email)
        .collect();
    Ok(AccessData {
        grants,
        compartments,
        users,
        live,
    })
}

/// Grants a compartment; the window's ends are `datetime-local` values in
/// UTC, or empty for "from now" / "no end".
#[server(prefix = "/sfn", endpoint = "grant_compartment", client = SocketClient, output = crate::codec::Json)]
pub async fn grant_compartment(
    compartment_id: String,
    user_email: String,
    valid_from: String,
    valid_until: String,
) -> Result<String, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, lockers};
    let principal = ssr::require(Ability::GrantWrite).await?;
    let services = ssr::services()?;
    let caller = ssr::caller(&principal)?;
    let id = super::id_of(&compartment_id)?;
    let window_end = |name: &str, s: &str| -> Result<Option<i64>, AppError> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        format::minute_ms(s).map(Some).ok_or_else(|| {
            ssr::refuse(
                AppError::Invalid(format!("{name} must be a date and time, not {s:?}")),
                "bad_time",
            )
        })
    };
    let from = window_end("valid from", &valid_from)?;
    let until = window_end("valid until", &valid_until)?;
    let grant = lockers::grant_access(&services, &caller, id, &user_email, from, until).await?;
    Ok(grant.id.to_string())
}

#[server(prefix = "/sfn", endpoint = "revoke_grant", client = SocketClient, output = crate::codec::Json)]
pub async fn revoke_grant(compartment_id: String, grant_id: String) -> Result<(), AppError> {
    use crate::auth::ssr;
    use lockstep_core::{identity::tokens::Ability, lockers};
    let principal = ssr::require(Ability::GrantWrite).await?;
    let services = ssr::services()?;
    let caller = ssr::caller(&principal)?;
    let (compartment, grant) = (super::id_of(&compartment_id)?, super::id_of(&grant_id)?);
    lockers::revoke_access(&services, &caller, compartment, grant).await?;
    Ok(())
}

type GrantAction = Action<(String, String, String, String), Result<String, AppError>>;

/// The grant form's fields, owned by the page so that a live refetch
/// (which re-renders the form with fresh choices) keeps a half-made grant.
#[derive(Clone, Copy)]
struct Draft {
    compartment: RwSignal<String>,
    email: RwSignal<String>,
    from: RwSignal<String>,
    until: RwSignal<String>,
}

/// The grant whose window is being edited, in an editor outside the live
/// table.
#[derive(Clone, Copy)]
struct EditGrant(RwSignal<Option<String>>);

#[component]
pub fn Access() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let include_revoked = RwSignal::new(false);
    let data = LiveResource::new(move || include_revoked.get(), access_overview);
    // The lockers channel is busy (heartbeats, doors): its changes refresh
    // the grants once per throttle, or not while paused.
    let (sync, live) = use_table_sync(move || data.refetch());
    let draft = Draft {
        compartment: RwSignal::new(String::new()),
        email: RwSignal::new(String::new()),
        from: RwSignal::new(String::new()),
        until: RwSignal::new(String::new()),
    };
    let grant = Action::new(move |(c, u, f, t): &(String, String, String, String)| {
        let args = (c.clone(), u.clone(), f.clone(), t.clone());
        async move {
            let r = grant_compartment(args.0, args.1, args.2, args.3).await;
            data.refetch();
            r
        }
    });
    let revoke = Action::new(move |(c, g): &(String, String)| {
        let (c, g) = (c.clone(), g.clone());
        async move {
            let r = revoke_grant(c, g).await;
            data.refetch();
            r
        }
    });
    let editing = RwSignal::new(None::<String>);
    provide_context(EditGrant(editing));
    view! {
        <PageTitle title="Access" lead="Who may open which compartment, and when (times in UTC)."/>
        <Show when=move || editing.get().is_some()>
            <RecordEditor record_type=RecordType::Grant record_id=Signal::derive(move || editing.get().unwrap_or_default()) heading="Validity window"/>
            <button type="button" class="mt-2 text-sm underline" on:click=move |_| editing.set(None)>"Close the window editor"</button>
        </Show>
        <TableLiveBar sync/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(d) => {
                        live.follow(&[(&d.live.channel, d.live.seq)]);
                        view! {
                            <GrantForm compartments=d.compartments users=d.users draft grant/>
                            <GrantTable grants=d.grants include_revoked revoke/>
                        }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
        {move || revoke.value().get().and_then(|r| r.err()).map(|e| view! {
            <p role="alert" class="mt-4 rounded-md bg-red-50 px-3 py-2 text-sm text-red-800">{e.to_string()}</p>
        })}
    }
}

#[component]
fn GrantForm(
    compartments: Vec<(String, String)>,
    users: Vec<String>,
    draft: Draft,
    grant: GrantAction,
) -> impl IntoView {
    let Draft {
        compartment,
        email,
        from,
        until,
    } = draft;
    if compartment.get_untracked().is_empty() {
        if let Some((id, _)) = compartments.first() {
            compartment.set(id.clone());
        }
    }
    let input = "mt-1 w-full rounded-md border border-slate-300 px-3 py-1.5";
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-labelledby="grant-h">
            <h2 id="grant-h" class="font-semibold">"Grant a compartment"</h2>
            <form class="mt-3 grid gap-3 sm:grid-cols-2 lg:grid-cols-5" on:submit=move |ev| {
                ev.prevent_default();
                grant.dispatch((compartment.get_untracked(), email.get_untracked(), from.get_untracked(), until.get_untracked()));
            }>
                <label class="text-sm"><span class="block text-slate-700">"Compartment"</span>
                    <select required data-testid="grant-compartment" class=input prop:value=move || compartment.get()
                        on:change=move |ev| compartment.set(event_target_value(&ev))>
                        {compartments.into_iter().map(|(id, label)| view! { <option value=id>{label}</option> }).collect_view()}
                    </select></label>
                <label class="text-sm"><span class="block text-slate-700">"User's email"</span>
                    <input required type="email" list="grant-users" data-testid="grant-email" class=input
                        prop:value=move || email.get() on:input=move |ev| email.set(event_target_value(&ev))/>
                    <datalist id="grant-users">
                        {users.into_iter().map(|u| view! { <option value=u></option> }).collect_view()}
                    </datalist></label>
                <label class="text-sm"><span class="block text-slate-700">"Valid from (UTC, optional)"</span>
                    <input type="datetime-local" data-testid="grant-from" class=input
                        prop:value=move || from.get() on:input=move |ev| from.set(event_target_value(&ev))/></label>
                <label class="text-sm"><span class="block text-slate-700">"Valid until (UTC, optional)"</span>
                    <input type="datetime-local" data-testid="grant-until" class=input
                        prop:value=move || until.get() on:input=move |ev| until.set(event_target_value(&ev))/></label>
                <div class="flex items-end">
                    <button type="submit" data-testid="grant-submit" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">
                        "Grant"
                    </button>
                </div>
            </form>
            {move || grant.value().get().map(|r| match r {
                Ok(_) => view! { <p role="status" class="mt-2 text-sm text-emerald-800" data-testid="grant-done">"Granted."</p> }.into_any(),
                Err(e) => view! { <p role="alert" class="mt-2 text-sm text-red-800">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

#[component]
fn GrantTable(
    grants: Vec<GrantRow>,
    include_revoked: RwSignal<bool>,
    revoke: Action<(String, String), Result<(), AppError>>,
) -> impl IntoView {
    let when =
        |ms: Option<i64>, none: &'static str| ms.map(format::utc).unwrap_or_else(|| none.into());
    let edit = use_context::<EditGrant>().map(|e| e.0);
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white">
            <div class="flex flex-wrap items-center justify-between gap-2 border-b border-slate-200 p-4">
                <h2 class="font-semibold">"Grants"</h2>
                <label class="flex items-center gap-2 text-sm">
                    <input type="checkbox" data-testid="grants-revoked" prop:checked=move || include_revoked.get()
                        on:change=move |ev| include_revoked.set(event_target_checked(&ev))/>
                    "Show revoked"
                </label>
            </div>
            <div class="overflow-x-auto">
                <table class="w-full text-left text-sm">
                    <thead class="text-slate-600">
                        <tr>
                            <th scope="col" class="px-4 py-2 font-medium">"Compartment"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"User"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"From"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Until"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"State"</th>
                            <th scope="col" class="px-4 py-2 font-medium"><span class="sr-only">"Actions"</span></th>
                        </tr>
                    </thead>
                    <tbody data-testid="grant-rows">
                        {if grants.is_empty() {
                            view! { <tr><td colspan="6" class="px-4 py-3 text-slate-600">"No grants."</td></tr> }.into_any()
                        } else {
                            grants.into_iter().map(|g| {
                                let ids = (g.compartment_id.clone(), g.id.clone());
                                let label = format!("Revoke {}'s access to {}", g.user_email, g.place);
                                let grant_id = g.id.clone();
                                view! {
                                    <tr class="border-t border-slate-100" data-testid="grant-row" data-email=g.user_email.clone() data-state=g.state.clone()>
                                        <td class="px-4 py-2"><a class="underline" href=format!("/admin/banks/{}", g.bank_id)>{g.place.clone()}</a></td>
                                        <td class="px-4 py-2">{g.user_email.clone()}</td>
                                        <td class="px-4 py-2 whitespace-nowrap">{when(g.valid_from, "—")}</td>
                                        <td class="px-4 py-2 whitespace-nowrap">{when(g.valid_until, "no end")}</td>
                                        <td class="px-4 py-2">{g.state.clone()}</td>
                                        <td class="px-4 py-2 text-right">
                                            {(g.state != "revoked").then(|| view! {
                                                <button type="button" data-testid="grant-edit"
                                                    class="mr-2 rounded-md border border-slate-300 px-2 py-1 text-xs font-medium hover:bg-slate-100"
                                                    on:click=move |_| if let Some(e) = edit { e.set(Some(grant_id.clone())) }>
                                                    "Edit window"
                                                </button>
                                                <button type="button" data-testid="grant-revoke" aria-label=label
                                                    class="rounded-md border border-red-300 px-2 py-1 text-xs font-medium text-red-800 hover:bg-red-50"
                                                    on:click=move |_| { revoke.dispatch(ids.clone()); }>
                                                    "Revoke"
                                                </button>
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect_view().into_any()
                        }}
                    </tbody>
                </table>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::grant_state;

    #[test]
    fn a_grant_is_in_one_state_at_a_time() {
        assert_eq!(grant_state(true, None, None, 5), "revoked");
        assert_eq!(grant_state(false, None, Some(5), 5), "expired");
        assert_eq!(grant_state(false, Some(6), None, 5), "scheduled");
        assert_eq!(grant_state(false, Some(5), Some(6), 5), "active");
        assert_eq!(grant_state(false, None, None, 5), "active");
    }
}
