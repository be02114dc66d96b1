//! The admin panel's dashboard: the shell later admin pages (locker banks,
//! provisioning, commands, grants) hang on, with the tenant's users.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::common::{ErrorPanel, Forbidden, TopBar};
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
pub fn AdminDashboard() -> impl IntoView {
    // Blocking: the server waits for it before sending the page, so a
    // refusal is sent with its 403 status.
    let overview = Resource::new_blocking(|| (), |_| load_admin_overview());
    view! {
        <Suspense fallback=|| view! { <p class="p-6 text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! { <AdminShell overview=o/> }.into_any(),
                    Err(AppError::Forbidden) => view! { <Forbidden/> }.into_any(),
                    Err(e) => view! { <ErrorPanel message=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

const NAV: [&str; 5] = [
    "Dashboard",
    "Locker banks",
    "Compartments",
    "Commands",
    "Access grants",
];

#[component]
fn AdminShell(overview: AdminOverviewData) -> impl IntoView {
    let (nav_open, set_nav_open) = signal(false);
    let (filter, set_filter) = signal(String::new());
    let users = overview.users;
    let user_count = users.len();
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
        <div class="min-h-screen" data-testid="admin-dashboard">
            <TopBar user=overview.me.clone() area="Admin"/>
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
                    class=move || {
                        if nav_open.get() {
                            "block w-full border-b border-slate-200 bg-white p-4 md:block md:w-56 md:border-b-0 md:border-r"
                        } else {
                            "hidden w-full border-b border-slate-200 bg-white p-4 md:block md:w-56 md:border-b-0 md:border-r"
                        }
                    }
                >
                    <ul class="space-y-1 text-sm">
                        {NAV
                            .iter()
                            .enumerate()
                            .map(|(i, item)| {
                                let class = if i == 0 {
                                    "rounded-md bg-indigo-50 px-3 py-2 font-medium text-indigo-700"
                                } else {
                                    "rounded-md px-3 py-2 text-slate-400"
                                };
                                view! { <li class=class>{*item}</li> }
                            })
                            .collect_view()}
                    </ul>
                </nav>
                <main class="flex-1 p-4 md:p-8">
                    <h1 class="text-2xl font-semibold tracking-tight">{overview.tenant_name}</h1>
                    <p class="mt-1 text-sm text-slate-600">
                        {format!("{user_count} account(s) in this tenant")}
                    </p>
                    <section class="mt-6 rounded-xl border border-slate-200 bg-white">
                        <div class="flex flex-wrap items-center justify-between gap-2 border-b border-slate-200 p-4">
                            <h2 class="font-semibold">"Users"</h2>
                            <input
                                type="search"
                                placeholder="Filter by name or email"
                                data-testid="user-filter"
                                on:input=move |ev| set_filter.set(event_target_value(&ev))
                                prop:value=filter
                                class="w-full max-w-xs rounded-md border border-slate-300 px-3 py-1.5 text-sm"
                            />
                        </div>
                        <table class="w-full text-left text-sm">
                            <thead class="text-slate-500">
                                <tr>
                                    <th class="px-4 py-2 font-medium">"Email"</th>
                                    <th class="px-4 py-2 font-medium">"Name"</th>
                                    <th class="px-4 py-2 font-medium">"Role"</th>
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
                    </section>
                </main>
            </div>
        </div>
    }
}
