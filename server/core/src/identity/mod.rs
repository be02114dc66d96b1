//! Who is asking, and may they: tenants and users ([`accounts`]), argon2id
//! password hashes ([`password`]), API tokens and their abilities
//! ([`tokens`]), browser sessions ([`session_store`], [`session_auth`]),
//! the sign-in throttle ([`throttle`]), the [`principal`] (session or
//! token) every adapter checks abilities on, and the [`caller`] every
//! domain command takes.

pub mod accounts;
pub mod caller;
pub mod password;
pub mod principal;
pub mod session_auth;
pub mod session_store;
pub mod throttle;
pub mod tokens;
