//! The tenant's accounts, with a filter.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::{failure, PageTitle};
use crate::{auth::SignedIn, error::AppError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub email: String,
    pub name: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOverviewData {
    pub me: SignedIn,
    pub tenant_name: String,
    pub users: Vec<UserRow>,
}

#[server(prefix = "/sfn", endpoint = "admin_overview")]
pub async fn load_admin_overview() -> Result<AdminOverviewData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::identity::{accounts, tokens::Ability};

    let principal = ssr::require(Ability::UserRead).await?;
    let user = principal.user();
    let services = ssr::services()?;
    let tenant = accounts::find_tenant(&services.db, user.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let users = accounts::list_users(&services.db, user.tenant_id)
        .await?
        .into_iter()
        .map(|u| UserRow {
            email: u.email,
            name: u.name,
            role: u.role.to_string(),
        })
        .collect();
    Ok(AdminOverviewData {
        me: ssr::to_current(user),
        tenant_name: tenant,
        users,
    })
}

#[component]
pub fn Users() -> impl IntoView {
    let overview = Resource::new_blocking(|| (), |_| load_admin_overview());
    view! {
        <PageTitle title="Users" lead="The accounts of this tenant."/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! { <UserTable overview=o/> }.into_any(),
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

#[component]
fn UserTable(overview: AdminOverviewData) -> impl IntoView {
    let (filter, set_filter) = signal(String::new());
    let users = overview.users;
    let visible = move || {
        let needle = filter.get().to_lowercase();
        users
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
                    on:input=move |ev| set_filter.set(event_target_value(&ev))
                    prop:value=filter
                    class="w-full max-w-xs rounded-md border border-slate-300 px-3 py-1.5 text-sm"
                />
            </div>
            <div class="overflow-x-auto">
                <table class="w-full text-left text-sm">
                    <thead class="text-slate-600">
                        <tr>
                            <th scope="col" class="px-4 py-2 font-medium">"Email"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Name"</th>
                            <th scope="col" class="px-4 py-2 font-medium">"Role"</th>
                        </tr>
                    </thead>
                    <tbody data-testid="user-rows">
                        <For each=visible key=|u| u.email.clone() let:u>
                            <tr class="border-t border-slate-100">
                                <td class="px-4 py-2">{u.email}</td>
                                <td class="px-4 py-2">{u.name}</td>
                                <td class="px-4 py-2">{u.role}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
    }
}
