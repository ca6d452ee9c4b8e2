//! sidecar-injector: a Kubernetes mutating admission webhook that adds Istio's proxy to pods,
//! with CPU and memory resolved field by field and checked before the API server sees them.
//!
//! The crate is a pure engine ([`engine`]) with thin layers around it: the AdmissionReview
//! wire format ([`review`]), the HTTPS server ([`server`]), manifests as YAML
//! ([`manifest`]), offline injection ([`offline`]), certificate generation ([`certs`]), sizing advice from
//! Prometheus ([`advise`]) and the build's [`version`].
#![forbid(unsafe_code)]

pub mod advise;
pub mod certs;
pub mod check;
pub mod explain;
pub mod manifest;
pub mod offline;
pub mod review;
pub mod server;
pub mod tag;
pub mod version;

/// The engine crate, under the path the adapters and tests have always used.
pub use sidecar_injector_engine as engine;
pub use sidecar_injector_engine::{config, quantity};
