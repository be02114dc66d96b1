//! HTTP routes outside the Leptos pages: health checks and the JSON API.

pub mod api;
pub mod health;
