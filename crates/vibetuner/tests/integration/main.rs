//! The framework's integration suites, one test binary (linking the framework once instead of
//! once per suite). Each module is one suite; `support` holds the store on each backend and the
//! service helpers they share. Run one suite with `cargo nextest run -p vibetuner -E
//! 'test(/^store::/)'`.
//!
//! Without the default features (`--no-default-features`, as CI also runs them) the MongoDB,
//! Redis and OAuth tests are compiled out and the rest run on the embedded store, store-backed
//! sessions and tasks, and in-process SSE; the helpers only those tests use are then unused.
#![cfg_attr(
    not(all(feature = "mongodb", feature = "redis", feature = "oauth")),
    allow(unused, dead_code)
)]

#[macro_use]
mod support;

mod app;
mod architecture;
mod auth;
mod crud;
mod face;
mod jobs;
mod links;
mod mail;
mod serve;
mod sse;
mod store;
mod take_over;
