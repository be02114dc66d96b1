//! The end-user app's home: "my compartments". Phone-sized first.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::common::{ErrorPanel, TopBar};
use crate::{auth::SignedIn, error::AppError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserHomeData {
    pub me: SignedIn,
}

#[server(prefix = "/sfn", endpoint = "user_home")]
pub async fn load_user_home() -> Result<UserHomeData, AppError> {
    use crate::auth::ssr;
    let user = ssr::require_user().await?;
    Ok(UserHomeData {
        me: ssr::to_current(&user),
    })
}

#[component]
pub fn UserHome() -> impl IntoView {
    let data = Resource::new_blocking(|| (), |_| load_user_home());
    view! {
        <Suspense fallback=|| view! { <p class="p-6 text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => {
                        view! {
                            <div class="min-h-screen" data-testid="user-app">
                                <TopBar user=d.me.clone() area="My lockers"/>
                                <main class="mx-auto max-w-lg p-4">
                                    <h1 class="text-xl font-semibold tracking-tight">
                                        {format!("Hello, {}", d.me.name)}
                                    </h1>
                                    <h2 class="mt-6 text-sm font-semibold uppercase tracking-wide text-slate-500">
                                        "My compartments"
                                    </h2>
                                    <p class="mt-2 rounded-lg border border-dashed border-slate-300 bg-white p-6 text-center text-sm text-slate-500">
                                        "No compartments have been shared with you yet."
                                    </p>
                                </main>
                            </div>
                        }
                            .into_any()
                    }
                    Err(e) => view! { <ErrorPanel message=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
