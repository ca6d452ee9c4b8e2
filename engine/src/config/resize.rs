//! The proxy's `resizePolicy` (`resizePolicy` in the config): what the kubelet does to
//! `istio-proxy` when its CPU or memory is resized in place (`pods/resize`).
//!
//! The default is CPU `NotRequired` (Envoy picks up a new CPU quota without a restart) and
//! memory `RestartContainer` (`GOMEMLIMIT` is read once, when the agent starts). The API
//! server refuses `RestartContainer` in a pod whose `restartPolicy` is `Never`, so such a
//! pod gets `NotRequired` for memory too, and the resize guard refuses a change of the
//! proxy's memory limit there instead (see `crate::resize`).

use serde::{Deserialize, Serialize};

/// What the kubelet does to a container when one resource is resized in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ResizeRestart {
    /// Apply the new value to the running container.
    NotRequired,
    /// Restart the container with the new value.
    RestartContainer,
}

impl ResizeRestart {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResizeRestart::NotRequired => "NotRequired",
            ResizeRestart::RestartContainer => "RestartContainer",
        }
    }

    /// Parses the API spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "NotRequired" => Some(ResizeRestart::NotRequired),
            "RestartContainer" => Some(ResizeRestart::RestartContainer),
            _ => None,
        }
    }
}

/// The `resizePolicy` written on the injected `istio-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ResizePolicyConfig {
    /// Write `resizePolicy` at all (off for clusters without in-place resize, where the API
    /// server refuses it on a native sidecar, and for Istio-identical output).
    pub enabled: bool,
    /// On a CPU resize.
    pub cpu: ResizeRestart,
    /// On a memory resize.
    pub memory: ResizeRestart,
}

impl Default for ResizePolicyConfig {
    fn default() -> Self {
        ResizePolicyConfig {
            enabled: true,
            cpu: ResizeRestart::NotRequired,
            memory: ResizeRestart::RestartContainer,
        }
    }
}
