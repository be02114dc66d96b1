//! Lockstep's web UI: the HTML shell, the router, the pages, and the server
//! functions they call. Compiled twice: with `ssr` into the server (where
//! server functions run and reach `lockstep-core` through the `Services`
//! the server provides as Leptos context), and with `hydrate` into the wasm
//! bundle (where server functions become HTTP calls).
//!
//! Map:
//! - [`error`]: the error type every server function returns;
//!   [`codec`]: the JSON encoding of their answers.
//! - [`auth`]: who is signed in; login, logout; the server-side guards.
//! - [`format`]: times, statuses and reasons in words.
//! - [`pages`]: one module per page.
//! - [`realtime`]: the tab's realtime client (hub socket, polling
//!   fallback) and the hooks pages follow channels with.
#![recursion_limit = "256"]

pub mod auth;
pub mod codec;
pub mod error;
pub mod format;
pub mod pages;
pub mod realtime;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, Link, MetaTags, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    path, Lazy, SsrMode,
};

use pages::admin::routes as admin;

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
    let pusher_key = use_context::<realtime::PusherKey>()
        .map(|k| k.0)
        .unwrap_or_default();
    let refresh_ms = use_context::<realtime::table_sync::RefreshMs>()
        .map(|r| r.0)
        .unwrap_or(realtime::table_sync::DEFAULT_REFRESH_MS);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="lockstep-pusher-key" content=pusher_key/>
                <meta name="lockstep-table-refresh-ms" content=refresh_ms.to_string()/>
                <meta name="theme-color" content="#4f46e5"/>
                <link rel="manifest" href="/manifest.webmanifest"/>
                <link rel="apple-touch-icon" href="/apple-touch-icon.png"/>
                <HashedStylesheet options=options.clone() id="leptos"/>
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
    realtime::provide_realtime();
    // Each routed page marks itself hydrated (`pages::common::mark_hydrated`).
    view! {
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title text="Lockstep"/>
        <Router>
            <Routes fallback=pages::not_found::NotFound>
                <Route path=path!("/login") view=pages::login::LoginPage/>
                // Async: the server sends each page whole, once its data
                // is read (no streamed fallbacks to swap in), so what the
                // browser hydrates is exactly what it was sent.
                // Lazy: the panel's code is fetched when an admin page is
                // first shown (`cargo leptos build --split`), so the
                // end-user app's first load does not carry it.
                <ParentRoute path=path!("/admin") view={Lazy::<admin::Layout>::new()} ssr=SsrMode::Async>
                    <Route path=path!("") view={Lazy::<admin::Dashboard>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("banks") view={Lazy::<admin::Banks>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("banks/:id/provisioning") view={Lazy::<admin::ProvisioningProgress>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("banks/:id") view={Lazy::<admin::BankPage>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("provisioning") view={Lazy::<admin::Provisioning>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("commands") view={Lazy::<admin::Commands>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("commands/:id") view={Lazy::<admin::CommandTimeline>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("access") view={Lazy::<admin::Access>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("users") view={Lazy::<admin::Users>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("notifications") view={Lazy::<admin::Notifications>::new()} ssr=SsrMode::Async/>
                </ParentRoute>
                <Route path=path!("/my") view=pages::user_home::UserHome/>
            </Routes>
        </Router>
    }
}
