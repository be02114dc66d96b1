//! Browser entry point: the only export is `hydrate()`, which attaches the
//! Leptos app to the HTML the server rendered (loading the lazy routes'
//! chunks the page needs first).
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_lazy(app::App);
}
