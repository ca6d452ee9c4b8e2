//! The ResourceQuota policy of the config file: `onQuota` and `quotaLimits`.

use serde::{Deserialize, Serialize};

/// What to do when the injected pod would exceed what is left of a ResourceQuota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnQuota {
    /// Shrink the proxy within its bounds until the pod fits, and warn.
    #[default]
    Fit,
    /// Deny the pod naming the quota.
    Deny,
}

/// The CPU and memory limits the proxy gets when a quota requires a limit nothing set:
/// `request` (the proxy's request) or a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaLimits {
    /// For `limits.cpu`.
    pub cpu: String,
    /// For `limits.memory`.
    pub memory: String,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            cpu: "request".into(),
            memory: "request".into(),
        }
    }
}
