//! `inject.istio.io/templates`: the injection templates a pod names.
//!
//! This injector renders Istio's `sidecar` template, and `gateway` as the layout of a pod whose
//! main container is the proxy. istiod refuses a pod naming a template it does not have; the
//! config's `unknownTemplates` says what a pod naming one we do not render gets: refused with
//! the names we render (`deny`, the default), left alone for another injector (`skip`), or
//! the sidecar regardless (`sidecar`). Empty names in the list are ignored.

use std::collections::BTreeMap;

use crate::annotations::{TEMPLATE_FORMS, TEMPLATES};
use crate::config::UnknownTemplates;
use crate::error::{InjectError, quoted};

/// The templates rendered here.
pub(crate) const RENDERED: [&str; 2] = ["sidecar", "gateway"];

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
