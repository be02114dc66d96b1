//! HTTP integration tests: the real server on port 0, on a fresh database
//! (SQLite, or PostgreSQL when `LOCKSTEP_TEST_DATABASE_URL` is set), driven
//! with reqwest. One test binary, one module per area.

mod admin_pages;
mod auth;
mod broker_acl;
mod cli;
mod cluster;
mod hardening;
mod helpers;
mod hub;
mod hub_presence;
mod mqtt;
mod open_flow;
mod operations;
mod provisioning;
mod records;
mod result_acks;
mod tokens;
