//! The page for unknown paths; its status is 404.

use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    #[cfg(feature = "ssr")]
    crate::auth::ssr::set_status(404);
    view! {
        <div class="mx-auto mt-24 max-w-md p-6 text-center">
            <h1 class="text-2xl font-semibold">"Page not found"</h1>
            <a href="/" class="mt-4 inline-block text-sm underline">"Home"</a>
        </div>
    }
}
