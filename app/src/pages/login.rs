//! The sign-in page. Works without JavaScript (a plain form post) and, once
//! hydrated, shows errors in place.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::auth::Login;

#[component]
pub fn LoginPage() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let login = ServerAction::<Login>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let error = move || {
        login
            .value()
            .get()
            .and_then(|result| result.err())
            .map(|e| e.to_string())
    };
    view! {
        <div class="flex min-h-screen items-center justify-center px-4">
            <div class="w-full max-w-sm rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
                <h1 class="text-xl font-semibold tracking-tight">"Sign in to Lockstep"</h1>
                <ActionForm action=login attr:class="mt-6 space-y-4">
                    <input type="hidden" name="next" value=next/>
                    <label class="block">
                        <span class="text-sm font-medium text-slate-700">"Email"</span>
                        <input
                            type="email"
                            name="email"
                            required
                            autocomplete="username"
                            class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-200"
                        />
                    </label>
                    <label class="block">
                        <span class="text-sm font-medium text-slate-700">"Password"</span>
                        <input
                            type="password"
                            name="password"
                            required
                            autocomplete="current-password"
                            class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-sm focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-200"
                        />
                    </label>
                    <Show when=move || error().is_some()>
                        <p
                            role="alert"
                            data-testid="login-error"
                            class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700"
                        >
                            {error}
                        </p>
                    </Show>
                    <button
                        type="submit"
                        data-testid="sign-in"
                        disabled=move || login.pending().get()
                        class="w-full rounded-md bg-indigo-600 px-3 py-2 text-sm font-semibold text-white hover:bg-indigo-500 disabled:opacity-60"
                    >
                        "Sign in"
                    </button>
                </ActionForm>
            </div>
        </div>
    }
}
