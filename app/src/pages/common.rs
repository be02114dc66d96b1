//! Pieces several pages use: the top bar, the sign-out button, the panels
//! shown for refusals and errors, in-app submission of GET forms, and the
//! hydrated marker.

use leptos::prelude::*;

use crate::{
    auth::{Logout, SignedIn},
    realtime::ConnectionIndicator,
};

/// Marks the page hydrated: `data-hydrated` on `<body>`, which the browser
/// tests wait for before they touch a page. Every routed page calls it
/// (not `App`): a lazy admin page hydrates only once its chunk has come,
/// after the app around it, and an effect runs only after the view that
/// made it has hydrated.
pub fn mark_hydrated() {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}

/// The `on:submit` of a search or filter form (`method="GET"` with an
/// `action`): navigates within the app to `action?fields`, as
/// `leptos_router`'s `Form` does, at a fraction of its weight in the wasm.
/// Before the wasm runs, the browser submits the form itself.
pub fn navigate_on_submit() -> impl Fn(leptos::ev::SubmitEvent) + 'static {
    let navigate = leptos_router::hooks::use_navigate();
    move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let Some(form) = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
            else {
                return;
            };
            let (Some(action), Ok(data)) = (
                form.get_attribute("action"),
                web_sys::FormData::new_with_form(&form),
            ) else {
                return;
            };
            let Ok(fields) = web_sys::UrlSearchParams::new_with_str_sequence_sequence(&data) else {
                return;
            };
            ev.prevent_default();
            let query = String::from(fields.to_string());
            navigate(&format!("{action}?{query}"), Default::default());
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&ev, &navigate);
    }
}

#[component]
pub fn SignOut() -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    view! {
        <ActionForm action=logout>
            <button
                type="submit"
                data-testid="sign-out"
                class="rounded-md border border-slate-300 px-3 py-1.5 text-sm font-medium hover:bg-slate-100"
            >
                "Sign out"
            </button>
        </ActionForm>
    }
}

#[component]
pub fn TopBar(user: SignedIn, #[prop(into)] area: String) -> impl IntoView {
    view! {
        <header class="flex items-center justify-between border-b border-slate-200 bg-white px-4 py-3">
            <div class="flex items-center gap-2">
                <span class="text-lg font-semibold tracking-tight">"Lockstep"</span>
                <span class="rounded bg-slate-100 px-2 py-0.5 text-xs font-medium text-slate-600">
                    {area}
                </span>
            </div>
            <div class="flex items-center gap-3">
                <ConnectionIndicator/>
                <span class="hidden text-sm text-slate-600 sm:inline" data-testid="whoami">
                    {user.email}
                </span>
                <SignOut/>
            </div>
        </header>
    }
}

#[component]
pub fn Forbidden() -> impl IntoView {
    view! {
        <div class="mx-auto mt-24 max-w-md rounded-lg border border-amber-300 bg-amber-50 p-6" data-testid="forbidden">
            <h1 class="text-lg font-semibold text-amber-900">"Administrators only"</h1>
            <p class="mt-2 text-sm text-amber-800">
                "Your account cannot open the admin panel."
            </p>
            <a href="/my" class="mt-4 inline-block text-sm font-medium text-amber-900 underline">
                "Go to my compartments"
            </a>
        </div>
    }
}

#[component]
pub fn ErrorPanel(#[prop(into)] message: String) -> impl IntoView {
    view! {
        <div class="mx-auto mt-24 max-w-md rounded-lg border border-red-300 bg-red-50 p-6" role="alert">
            <p class="text-sm text-red-800">{message}</p>
            <a href="/login" class="mt-4 inline-block text-sm font-medium text-red-900 underline">
                "Sign in again"
            </a>
        </div>
    }
}

/// A clock that ticks every second in the browser, starting from the
/// server's time (so the server-rendered text and the first hydrated one
/// agree).
pub fn ticking_now(server_now: i64) -> ReadSignal<i64> {
    let (now, set_now) = signal(server_now);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        let skew = js_sys::Date::now() as i64 - server_now;
        #[cfg(not(feature = "hydrate"))]
        let skew = 0;
        if let Ok(h) = set_interval_with_handle(
            move || {
                #[cfg(feature = "hydrate")]
                set_now.set(js_sys::Date::now() as i64 - skew);
                #[cfg(not(feature = "hydrate"))]
                let _ = (set_now, skew);
            },
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || h.clear());
        }
    });
    now
}
