//! Reasons the engine refuses a pod, each carrying what the user must fix.
//!
//! Every variant becomes the message of an `allowed: false` AdmissionResponse, which the
//! API server shows as `admission webhook "..." denied the request: <message>`. Messages
//! name the annotation, the value as written (shortened if huge) and the accepted form.

use crate::quantity::QuantityError;

/// Longest part of a user value quoted back in a message.
const MAX_QUOTED_CHARS: usize = 64;

/// Why a pod cannot be injected as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// A resource annotation is not an acceptable quantity.
    #[error("annotation {annotation} has value {value}, which {reason} (examples: {examples})")]
    InvalidQuantity {
        /// The annotation key.
        annotation: String,
        /// The value, quoted.
        value: String,
        /// What is wrong.
        reason: QuantityError,
        /// Accepted forms.
        examples: &'static str,
    },
    /// The final request for a resource is above its final limit.
    #[error(
        "{subject} request {request} (from {request_source}) is above its limit {limit} (from {limit_source}); set the request at or below the limit"
    )]
    RequestAboveLimit {
        /// The container and resource, e.g. `proxy CPU` or `init container memory`.
        subject: String,
        /// Canonical request.
        request: String,
        /// Where the request came from.
        request_source: String,
        /// Canonical limit.
        limit: String,
        /// Where the limit came from.
        limit_source: String,
    },
    /// The injected pod would exceed what is left of a ResourceQuota.
    #[error(
        "ResourceQuota {quota}: {resource} would be exceeded: {figures}; the API server has the last word, and the used figure here may be stale"
    )]
    QuotaExceeded {
        /// The quota's name.
        quota: String,
        /// e.g. `requests.cpu`.
        resource: String,
        /// What the pod needs, what the injected containers add, what is left (hard, used),
        /// and why the proxy was not shrunk when it was not.
        figures: String,
    },
    /// A ResourceQuota requires a value the proxy has not and policy cannot give.
    #[error(
        "ResourceQuota {quota} requires {resource} on every container, and the {container} has no {what} to set it from; set {annotation} or quotaLimits in the config"
    )]
    QuotaRequiresValue {
        /// The quota's name.
        quota: String,
        /// e.g. `limits.cpu`.
        resource: String,
        /// `proxy` or `init container`.
        container: &'static str,
        /// What is missing.
        what: &'static str,
        /// The annotation that would set it.
        annotation: &'static str,
    },
    /// A `pods/resize` of the injected proxy that policy refuses.
    #[error("resize of istio-proxy refused: {reason}")]
    ResizeRefused {
        /// Why, naming the value and what would be accepted.
        reason: String,
    },
    /// An annotation holds a malformed value.
    #[error("annotation {annotation} has value {value}, which is not valid: {reason} (accepted: {accepted})")]
    InvalidAnnotation {
        /// The annotation key.
        annotation: String,
        /// The value, quoted.
        value: String,
        /// What is wrong.
        reason: String,
        /// Accepted forms.
        accepted: &'static str,
    },
    /// A volume or mount we would add from `userVolume`/`userVolumeMount` breaks a rule of
    /// the API server, which would refuse the pod after our patch.
    #[error(
        "annotation {annotation} entry {entry} has {field} {value}, which {rule} (accepted: {accepted})",
        accepted = crate::annotations::spec(annotation).map_or("see the README", |row| row.accepted)
    )]
    InvalidUserVolume {
        /// The annotation key.
        annotation: &'static str,
        /// The entry's name (its key), quoted.
        entry: String,
        /// The field of the entry, e.g. `secret.defaultMode`.
        field: String,
        /// Its value, quoted.
        value: String,
        /// The API server's rule it breaks.
        rule: String,
    },
    /// A field of the pod's own `istio-proxy` or init container that Kubernetes forbids
    /// where injection puts that container.
    #[error(
        "the pod's own {container} container ({location}) sets {field}, which Kubernetes forbids on {destination}; injection puts {container} there (accepted: {accepted})"
    )]
    MovedContainerField {
        /// `istio-init`, `istio-validation` or `istio-proxy`.
        container: String,
        /// Where the pod has it, e.g. `spec.containers[1]`.
        location: String,
        /// The field, e.g. `livenessProbe`.
        field: &'static str,
        /// e.g. `an init container without restartPolicy: Always`.
        destination: &'static str,
        /// What to do instead.
        accepted: &'static str,
    },
    /// A port of the pod's own `istio-proxy` takes the name of a port the injected proxy keeps.
    #[error(
        "{location}: the pod's own istio-proxy names its port {port} {name:?}, the name of the injected istio-proxy's port {ours}; port names must be unique within a container (accepted: another name, or containerPort {ours} to replace that port)"
    )]
    ProxyPortNameTaken {
        /// Where, e.g. `spec.containers[1].ports[0].name`.
        location: String,
        /// The name.
        name: String,
        /// The user's port number.
        port: i64,
        /// Our port of that name.
        ours: i32,
    },
    /// `sidecar.istio.io/inject` or `nativeSidecar` holds a word istiod does not read as on or off.
    #[error(
        "{place} {key} has value {value}, which is not valid: istiod reads only \"true\" and \"false\" here (accepted: {accepted})",
        accepted = crate::annotations::SWITCH_FORMS
    )]
    InvalidSwitch {
        /// `label` or `annotation`.
        place: &'static str,
        /// The key.
        key: &'static str,
        /// The value, quoted.
        value: String,
    },
    /// An annotation that takes one of a few words holds something else.
    #[error("annotation {annotation} has value {value}, which is not one of {accepted}")]
    InvalidChoice {
        /// The annotation key.
        annotation: String,
        /// The value, quoted.
        value: String,
        /// Accepted words.
        accepted: &'static str,
    },
    /// The chosen profile is not configured.
    #[error("annotation {annotation} has value {value}, which is not a configured profile (profiles: {known})")]
    UnknownProfile {
        /// The annotation key.
        annotation: String,
        /// The value, quoted.
        value: String,
        /// The configured profile names.
        known: String,
    },
    /// A value is outside the configured bounds and `onViolation` is `deny`.
    #[error("proxy {field} {value} (from {origin}) is {direction} the {bound}")]
    OutOfBounds {
        /// e.g. `CPU limit`.
        field: String,
        /// The value.
        value: String,
        /// Where it came from.
        origin: String,
        /// `above` or `below`.
        direction: &'static str,
        /// e.g. `cluster max 2`.
        bound: String,
    },
    /// The LimitRanges and bounds leave no value that satisfies all of them.
    #[error("proxy {field}: {reason}")]
    Unsatisfiable {
        /// e.g. `CPU limit`.
        field: String,
        /// What conflicts, naming the LimitRange.
        reason: String,
    },
    /// The pod with the proxy would exceed a LimitRange's per-pod max.
    #[error("the pod with the proxy needs {needed}, above LimitRange {limit_range} per-Pod max {max}{hint}")]
    PodLimitExceeded {
        /// What the pod needs with the proxy at its smallest allowed size, e.g. `CPU limit 3`.
        needed: String,
        /// The LimitRange.
        limit_range: String,
        /// Its max.
        max: String,
        /// What could help.
        hint: String,
    },
    /// The injected pod's annotations would be larger than the API server accepts.
    #[error(
        "metadata.annotations: the pod's annotations would total {total} bytes of keys and values with the {added} bytes the injector sets (sidecar.istio.io/status and the others), above the API server's limit of {limit} bytes; keep the pod's own annotations to at most {room} bytes"
    )]
    AnnotationsTooLarge {
        /// Keys and values of the patched pod's annotations.
        total: usize,
        /// Of which the injector sets.
        added: usize,
        /// The API server's limit.
        limit: usize,
        /// What the pod's own annotations may total beside the injector's.
        room: usize,
    },
}

/// Quotes a user value for a message, shortened to a readable length and escaped.
pub fn quoted(value: &str) -> String {
    if value.chars().count() <= MAX_QUOTED_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_QUOTED_CHARS).collect();
        format!("{head:?}… ({} bytes)", value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_and_shortens() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(10_000);
        let shown = quoted(&long);
        assert!(shown.len() < 100 && shown.ends_with("(10000 bytes)"), "{shown}");
    }
}
