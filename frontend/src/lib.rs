//! Browser entry point: the only export is `hydrate()`, which attaches the
//! Leptos app to the HTML the server rendered.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
