//! One module per page, plus the pieces pages share.

pub mod admin;
pub mod common;
pub mod login;
pub mod not_found;
pub mod user_home;
