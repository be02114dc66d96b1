//! HTTP routes outside the Leptos pages: health checks, the JSON API, and
//! `/broadcasting/auth`.

pub mod api;
pub mod broadcasting;
pub mod health;
