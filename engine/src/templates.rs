//! `inject.istio.io/templates`: the injection templates a pod names.
//!
//! This injector renders Istio's `sidecar` template and its `gateway` template (a pod whose
//! main container is the proxy: [`crate::gateway`]); [`Template::of_pod`] picks the one a pod
//! gets. istiod refuses a pod naming a template it does not have; the
//! config's `unknownTemplates` says what a pod naming one we do not render gets: refused with
//! the names we render (`deny`, the default), left alone for another injector (`skip`), or
//! the sidecar regardless (`sidecar`). Empty names in the list are ignored.

use std::collections::BTreeMap;

use crate::annotations::{TEMPLATE_FORMS, TEMPLATES};
use crate::config::UnknownTemplates;
use crate::error::{InjectError, quoted};

/// The templates rendered here.
pub(crate) const RENDERED: [&str; 2] = ["sidecar", "gateway"];

/// The template a pod is rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Template {
    /// Istio's `sidecar`: traffic capture, the proxy beside the app.
    Sidecar,
    /// Istio's `gateway`: the proxy is the pod's main container, with no capture, no init
    /// container and no native sidecar layout.
    Gateway,
}

impl Template {
    /// `gateway` when `inject.istio.io/templates` names it (alone or among others: its layout
    /// decides where the proxy goes), else `sidecar`.
    pub(crate) fn of_pod(annotations: Option<&BTreeMap<String, String>>) -> Template {
        let gateway = annotations
            .and_then(|map| map.get(TEMPLATES))
            .is_some_and(|names| names.split(',').any(|name| name.trim() == "gateway"));
        if gateway { Template::Gateway } else { Template::Sidecar }
    }

    /// Whether the template captures traffic (adds `istio-init` or `istio-validation`).
    pub(crate) fn captures(self) -> bool {
        self == Template::Sidecar
    }
}

/// What to do with the pod's named templates: `Ok(None)` renders them, `Ok(Some(name))`
/// leaves the pod alone because it names `name`, and an error refuses it.
pub(crate) fn unrendered_template(
    annotations: Option<&BTreeMap<String, String>>,
    policy: UnknownTemplates,
) -> Result<Option<String>, InjectError> {
    let Some(value) = annotations.and_then(|map| map.get(TEMPLATES)) else {
        return Ok(None);
    };
    let Some(unknown) = value
        .split(',')
        .map(str::trim)
        .find(|name| !name.is_empty() && !RENDERED.contains(name))
    else {
        return Ok(None);
    };
    match policy {
        UnknownTemplates::Sidecar => Ok(None),
        UnknownTemplates::Skip => Ok(Some(unknown.to_string())),
        UnknownTemplates::Deny => Err(InjectError::InvalidAnnotation {
            annotation: TEMPLATES.into(),
            value: quoted(value),
            reason: format!(
                "this injector renders the sidecar and gateway templates, not {} (unknownTemplates: deny; \
                 skip leaves such pods to another injector)",
                quoted(unknown)
            ),
            accepted: TEMPLATE_FORMS,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(TEMPLATES.to_string(), value.to_string())])
    }

    #[test]
    fn gateway_is_chosen_when_named() {
        for value in ["gateway", " gateway ", "sidecar,gateway"] {
            assert_eq!(Template::of_pod(Some(&named(value))), Template::Gateway, "{value}");
        }
        for value in ["sidecar", "", "gateways", "my-gateway"] {
            assert_eq!(Template::of_pod(Some(&named(value))), Template::Sidecar, "{value}");
        }
        assert_eq!(Template::of_pod(None), Template::Sidecar);
        assert!(Template::Sidecar.captures() && !Template::Gateway.captures());
    }

    #[test]
    fn rendered_templates_and_empty_names_pass() {
        for value in ["sidecar", "gateway", "sidecar, gateway", "", " , sidecar"] {
            for policy in [
                UnknownTemplates::Deny,
                UnknownTemplates::Skip,
                UnknownTemplates::Sidecar,
            ] {
                assert_eq!(
                    unrendered_template(Some(&named(value)), policy).unwrap(),
                    None,
                    "{value}"
                );
            }
        }
        assert_eq!(unrendered_template(None, UnknownTemplates::Deny).unwrap(), None);
    }

    #[test]
    fn another_template_is_refused_skipped_or_ignored_as_configured() {
        let pod = named("sidecar,grpc-agent");
        let error = unrendered_template(Some(&pod), UnknownTemplates::Deny).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(TEMPLATES), "{message}");
        assert!(message.contains("\"grpc-agent\""), "{message}");
        assert!(message.contains(TEMPLATE_FORMS), "{message}");
        assert_eq!(
            unrendered_template(Some(&pod), UnknownTemplates::Skip).unwrap(),
            Some("grpc-agent".to_string())
        );
        assert_eq!(
            unrendered_template(Some(&pod), UnknownTemplates::Sidecar).unwrap(),
            None
        );
    }
}
