//! The end-to-end suite in one test binary (one link instead of eleven): each module drives
//! real processes — a generated app, the `vibetuner` CLI, a browser, Redis, MongoDB — from the
//! outside.

mod app;
mod browser;
mod cli;
mod dev;
mod doctor;
mod faults;
mod nix;
mod notes;
mod scaffold;
mod update;
mod worker;
