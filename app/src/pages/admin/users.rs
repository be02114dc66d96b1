//! The tenant's accounts: a filterable table where an admin creates an
//! account (its first password generated and shown once), sets a role,
//! and disables or enables an account. Their own account is listed but
//! not editable here (a tenant never loses its last admin by a slip).

use leptos::prelude::*;

use crate::realtime::table_sync::{use_table_sync, TableLiveBar, TableSync};
use serde::{Deserialize, Serialize};

use super::{
    failure,
    records::{editor::RecordEditor, RecordType},
    PageTitle,
};
use crate::{auth::SignedIn, error::AppError, realtime::client::SocketClient};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub is_me: bool,
    /// What an edit of this account names (the version guard, see
    /// `lockstep_core::records`).
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOverviewData {
    pub me: SignedIn,
    pub tenant_name: String,
    pub users: Vec<UserRow>,
    /// `private-tenant.{id}.users`: account edits.
    pub live: super::Followed,
}

#[server(prefix = "/sfn", endpoint = "admin_overview", output = crate::codec::Json)]
pub async fn load_admin_overview() -> Result<AdminOverviewData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel,
        identity::{accounts, tokens::Ability},
    };

    let principal = ssr::require(Ability::UserRead).await?;
    let user = principal.user();
    let services = ssr::services()?;
    let tenant = accounts::find_tenant(&services.db, user.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let users = accounts::list_accounts(&services.db, user.tenant_id)
        .await?
        .into_iter()
        .map(|a| UserRow {
            id: a.user.id.to_string(),
            is_me: a.user.id == user.id,
            email: a.user.email,
            name: a.user.name,
            role: a.user.role.to_string(),
            disabled: a.disabled_at.is_some(),
            version: a.version,
        })
        .collect();
    let live = super::followed(&services, Channel::TenantUsers(user.tenant_id)).await?;
    Ok(AdminOverviewData {
        me: ssr::to_current(user),
        tenant_name: tenant,
        users,
        live,
    })
}

/// A new account and its first password, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    pub email: String,
    pub password: String,
}

#[server(prefix = "/sfn", endpoint = "create_user", client = SocketClient, output = crate::codec::Json)]
pub async fn create_user(
    email: String,
    name: Option<String>,
    role: String,
) -> Result<NewAccount, AppError> {
    use crate::auth::ssr;
    use lockstep_core::identity::{accounts, tokens};
    let principal = ssr::require(tokens::Ability::UserWrite).await?;
    let services = ssr::services()?;
    let role: accounts::Role = role.parse()?;
    let password = tokens::random_secret("", 20);
    let name = name.filter(|n| !n.trim().is_empty());
    let user = accounts::create_account(
        &services.db,
        principal.user(),
        &email,
        name.as_deref(),
        role,
        &password,
    )
    .await?;
    tracing::info!(user_id = %user.id, role = %user.role, "account created");
    Ok(NewAccount {
        email: user.email,
        password,
    })
}

/// Sets another account's role, made on the account's `version` (a
/// stale one is refused with who changed it).
#[server(prefix = "/sfn", endpoint = "set_user_role", client = SocketClient, output = crate::codec::Json)]
pub async fn set_user_role(user_id: String, role: String, version: i64) -> Result<(), AppError> {
    use lockstep_core::records::UserEdit;
    let edit = UserEdit {
        role: Some(role.parse()?),
        ..UserEdit::default()
    };
    ssr::edit_user(&user_id, version, edit).await?;
    tracing::info!(user_id, %role, "role set");
    Ok(())
}

/// Disables (or enables) another account, made on its `version`.
#[server(prefix = "/sfn", endpoint = "set_user_disabled", client = SocketClient, output = crate::codec::Json)]
pub async fn set_user_disabled(
    user_id: String,
    disabled: bool,
    version: i64,
) -> Result<(), AppError> {
    use lockstep_core::records::UserEdit;
    let edit = UserEdit {
        disabled: Some(disabled),
        ..UserEdit::default()
    };
    ssr::edit_user(&user_id, version, edit).await?;
    tracing::info!(user_id, disabled, "account disabled flag set");
    Ok(())
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::error::AppError;
    use lockstep_core::{identity::tokens::Ability, records};

    /// An account edit under the version guard, by the signed-in admin.
    pub async fn edit_user(
        user_id: &str,
        version: i64,
        edit: records::UserEdit,
    ) -> Result<(), AppError> {
        use crate::auth::ssr;
        let principal = ssr::require(Ability::UserWrite).await?;
        let caller = ssr::caller(&principal)?;
        let services = ssr::services()?;
        let id = super::super::id_of(user_id)?;
        records::edit_user(&services, &caller, id, version, edit).await?;
        Ok(())
    }
}

#[component]
pub fn Users() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let overview = Resource::new_blocking(|| (), |_| load_admin_overview());
    // Live changes (and the admin's own) refresh the rows in place: the
    // table is rendered once, so the filter and focus stay.
    let fresh = RwSignal::new(None::<Vec<UserRow>>);
    let (sync, live) = use_table_sync(move || {
        leptos::task::spawn_local(async move {
            if let Ok(o) = load_admin_overview().await {
                fresh.try_set(Some(o.users));
            }
        });
    });
    // Outside the table, so a refetch keeps them.
    let filter = RwSignal::new(String::new());
    let create = Action::new(move |(email, name, role): &(String, String, String)| {
        let (email, name, role) = (email.clone(), name.clone(), role.clone());
        async move {
            let r = create_user(email, Some(name), role).await;
            sync.refresh_now();
            r
        }
    });
    let change = Action::new(move |c: &Change| {
        let c = c.clone();
        async move {
            let r = match c {
                Change::Role(id, role, version) => set_user_role(id, role, version).await,
                Change::Disabled(id, disabled, version) => {
                    set_user_disabled(id, disabled, version).await
                }
            };
            sync.refresh_now();
            r
        }
    });
    let editing = RwSignal::new(None::<String>);
    view! {
        <PageTitle title="Users" lead="The accounts of this tenant: create one, set its role, disable it."/>
        <Show when=move || editing.get().is_some()>
            <RecordEditor record_type=RecordType::User record_id=Signal::derive(move || editing.get().unwrap_or_default()) heading="Edit account"/>
            <button type="button" class="mt-2 text-sm underline" on:click=move |_| editing.set(None)>"Close the account editor"</button>
        </Show>
        <NewUserForm create/>
        {move || change.value().get().and_then(|r| r.err()).map(|e| view! {
            <p role="alert" class="mt-4 rounded-md bg-red-50 px-3 py-2 text-sm text-red-800">{e.to_string()}</p>
        })}
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => {
                        live.follow(&[(&o.live.channel, o.live.seq)]);
                        view! { <UserTable users=o.users fresh sync filter change editing/> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

/// One edit of an account.
#[derive(Clone, Debug)]
enum Change {
    /// Account id, new role, the account's version.
    Role(String, String, i64),
    /// Account id, disabled or not, the account's version.
    Disabled(String, bool, i64),
}

type CreateAction = Action<(String, String, String), Result<NewAccount, AppError>>;

#[component]
fn NewUserForm(create: CreateAction) -> impl IntoView {
    let (email, name, role) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new("user".to_string()),
    );
    let input = "mt-1 w-full rounded-md border border-slate-300 px-3 py-1.5";
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-labelledby="new-user-h">
            <h2 id="new-user-h" class="font-semibold">"New account"</h2>
            <form class="mt-3 grid gap-3 sm:grid-cols-4" on:submit=move |ev| {
                ev.prevent_default();
                create.dispatch((email.get_untracked(), name.get_untracked(), role.get_untracked()));
            }>
                <label class="text-sm"><span class="block text-slate-700">"Email"</span>
                    <input required type="email" maxlength="254" data-testid="new-user-email" class=input
                        prop:value=move || email.get() on:input=move |ev| email.set(event_target_value(&ev))/></label>
                <label class="text-sm"><span class="block text-slate-700">"Name (optional)"</span>
                    <input maxlength="120" data-testid="new-user-name" class=input
                        prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label class="text-sm"><span class="block text-slate-700">"Role"</span>
                    <select data-testid="new-user-role" class=input prop:value=move || role.get()
                        on:change=move |ev| role.set(event_target_value(&ev))>
                        <option value="user">"user"</option>
                        <option value="admin">"admin"</option>
                    </select></label>
                <div class="flex items-end">
                    <button type="submit" data-testid="new-user-create" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500">
                        "Create account"
                    </button>
                </div>
            </form>
            {move || create.value().get().map(|r| match r {
                Ok(a) => view! {
                    <div role="status" class="mt-3 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm">
                        <p class="font-medium">{format!("{} can sign in with this password; pass it on now, it is shown only once.", a.email)}</p>
                        <code class="mt-2 inline-block break-all rounded bg-white px-2 py-1 font-mono text-xs" data-testid="new-user-password">{a.password}</code>
                    </div>
                }.into_any(),
                Err(e) => view! { <p role="alert" class="mt-3 text-sm text-red-800">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

#[component]
fn UserTable(
    users: Vec<UserRow>,
    fresh: RwSignal<Option<Vec<UserRow>>>,
    sync: TableSync,
    filter: RwSignal<String>,
    change: Action<Change, Result<(), AppError>>,
    editing: RwSignal<Option<String>>,
) -> impl IntoView {
    let first = StoredValue::new(users);
    let current = Memo::new(move |_| fresh.get().unwrap_or_else(|| first.get_value()));
    let visible = move || {
        let needle = filter.get().to_lowercase();
        current
            .get()
            .iter()
            .filter(|u| {
                needle.is_empty()
                    || u.email.contains(&needle)
                    || u.name.to_lowercase().contains(&needle)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white">
            <div class="flex flex-wrap items-center justify-between gap-2 border-b border-slate-200 p-4">
                <h2 class="font-semibold">"Accounts"</h2>
                <input
                    type="search"
                    placeholder="Filter by name or email"
                    aria-label="Filter by name or email"
                    data-testid="user-filter"
                    on:input=move |ev| filter.set(event_target_value(&ev))
                    prop:value=filter
                    class="w-full max-w-xs rounded-md border border-slate-300 px-3 py-1.5 text-sm"
                />
            </div>
            <div class="px-4"><TableLiveBar sync/></div>
            <div class="overflow-x-auto" data-testid="user-table" data-refreshes=move || sync.refreshes.get() data-waiting=move || sync.waiting.get()>
                <table class="w-full text-left text-sm">
                    <thead class="text-slate-600">
                        <tr>
                            <th scope="col" class="px-4 py-2 font-medium">"Email"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Name"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Role"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Status"</th>
                        </tr>
                    </thead>
                    <tbody data-testid="user-rows">
                        <For each=visible key=|u| (u.id.clone(), u.version, u.name.clone()) let:u>
                            <UserRowView u sync change editing/>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
    }
}

#[component]
fn UserRowView(
    u: UserRow,
    sync: TableSync,
    change: Action<Change, Result<(), AppError>>,
    editing: RwSignal<Option<String>>,
) -> impl IntoView {
    let (id, id2, id3) = (u.id.clone(), u.id.clone(), u.id.clone());
    let disabled = u.disabled;
    let version = u.version;
    let role_label = format!("Role of {}", u.email);
    let flashed = sync.flashed(u.id.clone());
    let row_class = move || TableSync::row_class(flashed);
    view! {
        <tr class=row_class data-testid="user-row" data-email=u.email.clone() data-changed=move || flashed.get().to_string()>
            <td class="px-4 py-2">{u.email.clone()}{u.is_me.then_some(" (you)")}</td>
            <td class="px-4 py-2">
                {u.name.clone()}
                {(!u.is_me).then(|| view! {
                    <button type="button" data-testid="user-edit" class="ml-2 text-xs text-slate-600 underline"
                        on:click=move |_| editing.set(Some(id3.clone()))>"Edit"</button>
                })}
            </td>
            <td class="px-4 py-2">
                {if u.is_me {
                    view! { <span>{u.role.clone()}</span> }.into_any()
                } else {
                    view! {
                        <select aria-label=role_label data-testid="user-role" prop:value=u.role.clone()
                            class="rounded-md border border-slate-300 px-2 py-1 text-sm"
                            on:change=move |ev| { change.dispatch(Change::Role(id.clone(), event_target_value(&ev), version)); }>
                            <option value="user" selected=u.role == "user">"user"</option>
                            <option value="admin" selected=u.role == "admin">"admin"</option>
                        </select>
                    }.into_any()
                }}
            </td>
            <td class="px-4 py-2">
                <span class=if disabled { "text-red-800" } else { "text-emerald-800" } data-testid="user-status">
                    {if disabled { "disabled" } else { "active" }}
                </span>
                {(!u.is_me).then(|| view! {
                    <button type="button" data-testid="user-toggle"
                        class="ml-3 rounded-md border border-slate-300 px-2 py-1 text-xs font-medium hover:bg-slate-100"
                        on:click=move |_| { change.dispatch(Change::Disabled(id2.clone(), !disabled, version)); }>
                        {if disabled { format!("Enable {}", u.email) } else { format!("Disable {}", u.email) }}
                    </button>
                })}
            </td>
        </tr>
    }
}
