//! `tag`: the MutatingWebhookConfiguration that sends the pods of a revision tag to this
//! injector, as `istioctl tag set` writes one for istiod.
//!
//! It is `deploy/webhook/`'s registration (compiled in) cut down to its two `istio.io/rev`
//! webhooks, with the tag in their `istio.io/rev In [...]` selectors, named
//! `sidecar-injector-tag-<tag>` and labelled `istio.io/tag: <tag>` as Istio labels its tag
//! webhooks. Which revision the tag means is the config's `istio.tags`, read by the injector
//! for every pod, so moving a tag is a config change, not a new registration. When applied,
//! the caBundle is copied from the installed `sidecar-injector` registration.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, PostParams};

use crate::config::istio_source::REVISION_LABEL;

/// `deploy/webhook/`'s registration, as shipped.
const SHIPPED: &str = include_str!("../deploy/webhook/mutatingwebhookconfiguration.yaml");

/// The label Istio puts on a tag's webhook configuration.
const TAG_LABEL: &str = "istio.io/tag";

/// Why a tag's registration cannot be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// The tag is not a valid label value.
    #[error(
        "tag {0:?} is not a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    BadTag(String),
    /// The shipped registration does not parse (a build problem).
    #[error("deploy/webhook/mutatingwebhookconfiguration.yaml: {0}")]
    Shipped(String),
    /// The API server refused.
    #[error("{0}")]
    Api(String),
}

/// The registration for `tag`.
pub fn tag_webhook(tag: &str) -> Result<MutatingWebhookConfiguration, TagError> {
    let valid = !tag.is_empty()
        && tag.len() <= 63
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(TagError::BadTag(tag.to_string()));
    }
    let mut configuration: MutatingWebhookConfiguration =
        serde_saphyr::from_str(SHIPPED).map_err(|error| TagError::Shipped(error.to_string()))?;
    configuration.metadata.name = Some(format!("sidecar-injector-tag-{tag}"));
    configuration
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TAG_LABEL.to_string(), tag.to_string());
    let webhooks = configuration.webhooks.take().unwrap_or_default();
    let retargeted = webhooks
        .into_iter()
        .filter_map(|mut webhook| {
            let selectors = [webhook.namespace_selector.as_mut(), webhook.object_selector.as_mut()];
            let mut selects_revision = false;
            for requirement in selectors
                .into_iter()
                .flatten()
                .flat_map(|selector| selector.match_expressions.iter_mut().flatten())
            {
                if requirement.key == REVISION_LABEL && requirement.operator == "In" {
                    requirement.values = Some(vec![tag.to_string()]);
                    selects_revision = true;
                }
            }
            if !selects_revision {
                return None;
            }
            webhook.name = format!("{tag}.{}", webhook.name);
            Some(webhook)
        })
        .collect();
    configuration.webhooks = Some(retargeted);
    Ok(configuration)
}

/// Creates or replaces the tag's registration, with the caBundle of the installed
/// `sidecar-injector` registration.
pub async fn apply(client: kube::Client, mut configuration: MutatingWebhookConfiguration) -> Result<(), TagError> {
    let api = Api::<MutatingWebhookConfiguration>::all(client);
    let api_error = |error: kube::Error| TagError::Api(error.to_string());
    let installed = api.get_opt("sidecar-injector").await.map_err(api_error)?;
    let ca_bundle = installed
        .and_then(|installed| installed.webhooks?.into_iter().next()?.client_config.ca_bundle)
        .ok_or_else(|| {
            TagError::Api(
                "MutatingWebhookConfiguration sidecar-injector (deploy/) is not installed or has no caBundle".into(),
            )
        })?;
    for webhook in configuration.webhooks.iter_mut().flatten() {
        webhook.client_config.ca_bundle = Some(ca_bundle.clone());
    }
    let name = configuration.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await.map_err(api_error)? {
        None => api
            .create(&PostParams::default(), &configuration)
            .await
            .map_err(api_error)?,
        Some(existing) => {
            configuration.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &configuration)
                .await
                .map_err(api_error)?
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_replaces_the_revision_in_the_rev_webhooks_only() {
        let configuration = tag_webhook("prod").unwrap();
        assert_eq!(
            configuration.metadata.name.as_deref(),
            Some("sidecar-injector-tag-prod")
        );
        let webhooks = configuration.webhooks.unwrap();
        let names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "prod.rev.namespace.sidecar-injector.istio.io",
                "prod.rev.object.sidecar-injector.istio.io"
            ]
        );
        for webhook in &webhooks {
            let values: Vec<Vec<String>> = [&webhook.namespace_selector, &webhook.object_selector]
                .into_iter()
                .flatten()
                .flat_map(|s| s.match_expressions.iter().flatten())
                .filter(|r| r.key == REVISION_LABEL && r.operator == "In")
                .map(|r| r.values.clone().unwrap_or_default())
                .collect();
            assert_eq!(values, [vec!["prod".to_string()]], "{}", webhook.name);
        }
        assert!(matches!(tag_webhook("Prod/x"), Err(TagError::BadTag(_))));
    }
}
