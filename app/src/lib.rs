//! Lockstep's web UI: the HTML shell, the router, the pages, and the server
//! functions they call. Compiled twice: with `ssr` into the server (where
//! server functions run and reach `lockstep-core` through the `Services`
//! the server provides as Leptos context), and with `hydrate` into the wasm
//! bundle (where server functions become HTTP calls).
//!
//! Map:
//! - [`error`]: the error type every server function returns.
//! - [`auth`]: who is signed in; login, logout; the server-side guards.
//! - [`pages`]: one module per page.
#![recursion_limit = "256"]

pub mod auth;
pub mod error;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

/// The Content-Security-Policy of a page: scripts only from this site or
/// inline with this response's nonce (Leptos puts it on the hydration
/// script and on every inline script it streams), WebAssembly compiled,
/// nothing framed.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Sends the page's CSP as a response header (SSR only).
#[cfg(feature = "ssr")]
fn send_csp() {
    use axum::http::{header::CONTENT_SECURITY_POLICY, HeaderValue};
    let nonce = leptos::nonce::use_nonce();
    let options = use_context::<leptos_axum::ResponseOptions>();
    if let (Some(nonce), Some(options)) = (nonce, options) {
        if let Ok(value) = HeaderValue::from_str(&page_csp(&nonce)) {
            options.insert_header(CONTENT_SECURITY_POLICY, value);
        }
    }
}

/// The whole HTML document; the server renders it for every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    send_csp();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 antialiased">
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser: once this one has run, the page is
    // hydrated and interactive (browser tests wait for this marker).
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/lockstep.css"/>
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title text="Lockstep"/>
        <Router>
            <Routes fallback=pages::not_found::NotFound>
                <Route path=path!("/login") view=pages::login::LoginPage/>
                <Route path=path!("/admin") view=pages::admin::AdminDashboard/>
                <Route path=path!("/my") view=pages::user_home::UserHome/>
            </Routes>
        </Router>
    }
}
