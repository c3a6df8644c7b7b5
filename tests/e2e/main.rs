//! End-to-end tests: a real herald on port 0, real WebSocket clients, real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod process;
mod redis_server;

mod assets;
mod auth;
mod backpressure;
mod bad_input;
mod batch;
mod close;
mod docs;
mod history;
mod history_api;
mod http_hygiene;
mod large_frames;
mod limits;
mod memory;
mod metrics;
mod notify;
mod properties;
mod redis;
mod redis_cluster;
mod redis_expiry;
mod redis_history;
mod resume_seam;
mod shutdown;
mod subscribe;
