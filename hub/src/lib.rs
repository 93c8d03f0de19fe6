//! Anxin hub: real-time safety monitoring for elders who live alone.
//!
//! Layout (data flows top to bottom; see ARCHITECTURE.md):
//! - [`broker`]: the embedded MQTT broker (rumqttd) with device auth and a topic ACL.
//! - [`ingest`]: MQTT messages → typed observations; the only code that knows payloads ([`ingest::contract`]).
//! - [`rules`]: the stage that runs the pure `alert_rules` engine and applies its decisions.
//! - [`alarms`]: the alarm lifecycle — persist first, then publish.
//! - [`escalation`]: wakes when a deadline in the store is due.
//! - [`notify`]: fan-out to websocket clients; [`delivery`]: SMS, voice and webhook
//!   deliveries (rows planned with the step, a worker with retries and fallback).
//! - [`twilio`]: the Twilio wire layer (REST client, signatures, TwiML, callback parsing);
//!   [`phone`]: SMS and voice channels over it; [`webhook`]: the platform's webhook.
//! - [`http`]: REST + websocket; every request asks [`authz`] (the one place that decides
//!   who may see and do what, and audits refusals).
//! - [`store`]: the only module with SQL.
//! - [`health`]: the watchdog behind `/healthz` (is each stage making progress?).
//! - [`app`]: wiring; [`cli`]: the `hub` command; [`config`]: settings; [`clock`]: injected time;
//!   [`listen`]: the listen ports, checked (and with `--demo` moved) before a start.
//! - [`import`]: the district's CSV files in and out; [`spreadsheet`]: the one place every
//!   CSV the hub reads or writes goes through (no cell is ever a formula; malformed text
//!   is refused).
//! - [`rules_tool`]: `hub rules check` / `hub rules test` — validate a rules file, replay a
//!   recorded device stream through it on virtual time (supervisor tooling, no hub needed).

pub mod alarms;
pub mod app;
pub mod authz;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod escalation;
pub mod health;
pub mod http;
pub mod import;
pub mod ingest;
pub mod listen;
pub mod live;
pub mod notify;
pub mod phone;
pub mod roster;
pub mod rules;
pub mod rules_tool;
pub mod secrets;
pub mod spreadsheet;
pub mod store;
pub mod telemetry;
pub mod twilio;
pub mod webhook;

pub use app::App;
pub use config::Settings;
