//! `sidecar.istio.io/proxyImageType`: the image variant (`distroless`, `debug`, `default`) of
//! the proxy and init images for one pod, applied to the image tag as istiod does
//! (`updateImageTypeIfPresent`): a known variant already at the end of the tag is replaced,
//! `default` removes it, any other word is appended as `-<type>`. An image the pod names itself
//! (`sidecar.istio.io/proxyImage`) is used as written, as istiod uses a full image reference.

/// Istio's published image types that a tag may already end in.
const KNOWN_IMAGE_TYPES: [&str; 2] = ["distroless", "debug"];

/// `image` with its tag changed for `image_type`; an image without a tag is returned as is.
pub(crate) fn with_image_type(image: &str, image_type: &str) -> String {
    let name_end = image.rfind('/').map_or(0, |slash| slash + 1);
    let Some(colon) = image[name_end..].find(':').map(|at| name_end + at) else {
        return image.to_string();
    };
    let (repository, tag) = (&image[..colon], &image[colon + 1..]);
    if image_type.is_empty() {
        return image.to_string();
    }
    let tag = KNOWN_IMAGE_TYPES
        .iter()
        .find_map(|known| tag.strip_suffix(&format!("-{known}")))
        .unwrap_or(tag);
    match image_type {
        "default" => format!("{repository}:{tag}"),
        image_type => format!("{repository}:{tag}-{image_type}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_types_change_the_tag_as_istiod_does() {
        let image = "docker.io/istio/proxyv2:1.28.0";
        assert_eq!(
            with_image_type(image, "distroless"),
            "docker.io/istio/proxyv2:1.28.0-distroless"
        );
        assert_eq!(
            with_image_type("r:5000/p:1.28.0-debug", "distroless"),
            "r:5000/p:1.28.0-distroless"
        );
        assert_eq!(
            with_image_type("docker.io/istio/proxyv2:1.28.0-distroless", "default"),
            image
        );
        assert_eq!(with_image_type(image, ""), image);
        assert_eq!(
            with_image_type("registry:5000/proxyv2", "debug"),
            "registry:5000/proxyv2"
        );
    }
}
