//! The framework's integration suites, one test binary (linking the framework once instead of
//! once per suite). Each module is one suite; `support` holds the store on each backend and the
//! service helpers they share. Run one suite with `cargo nextest run -p vibetuner -E
//! 'test(/^store::/)'`.

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
