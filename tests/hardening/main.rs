//! Hardening tests against the real HTTPS server: certificate rotation, graceful shutdown
//! (in-process and the real binary under SIGTERM), limits and timeouts, TLS versions, ALPN
//! and mTLS, config reload, an unreachable API server, large reviews beside small ones, and
//! (ignored by default) a soak.

mod binary;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod fixture;
mod large_reviews;
mod limits;
#[path = "../../bench/pods.rs"]
mod pods;
mod reload;
mod rotation;
mod shutdown;
mod soak;
mod tls;
