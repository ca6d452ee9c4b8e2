//! sidecar-injector: a Kubernetes mutating admission webhook that adds Istio's proxy to pods,
//! with CPU and memory resolved field by field and checked before the API server sees them.
//!
//! The crate is a pure engine ([`engine`]) with thin layers around it: the AdmissionReview
//! wire format ([`review`]), the HTTPS server ([`server`]), offline injection
//! ([`offline`]) and certificate generation ([`certs`]).
#![forbid(unsafe_code)]

pub mod certs;
pub mod config;
pub mod engine;
pub mod explain;
pub mod offline;
pub mod quantity;
pub mod reinject;
pub mod review;
pub mod server;
