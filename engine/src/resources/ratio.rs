//! Proportional sizing: the proxy as a fraction of the app containers' summed requests.

use std::collections::BTreeMap;

use super::Resource;
use super::app_amounts::PodView;
use crate::quantity::Quantity;

/// Annotation sizing the proxy CPU request as a fraction of the app's CPU requests.
pub use crate::annotations::PROXY_CPU_RATIO;
/// Annotation sizing the proxy memory request as a fraction of the app's memory requests.
pub use crate::annotations::PROXY_MEMORY_RATIO;
/// Accepted forms, for messages.
pub use crate::annotations::RATIO_FORMS;

/// Most decimal places accepted.
const MAX_DECIMALS: u32 = 6;

/// An exact fraction `numerator / 10^6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    millionths: i64,
}

impl Ratio {
    /// Parses `0.1`, `.25`, `1`, or `10%`; `None` when malformed, zero, or above 10.
    pub fn parse(text: &str) -> Option<Ratio> {
        let text = text.trim();
        let (number, scale) = match text.strip_suffix('%') {
            Some(number) => (number.trim(), 100),
            None => (text, 1),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > MAX_DECIMALS as usize
            || whole.len() > 6
        {
            return None;
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let padded = format!("{fraction:0<6}");
        let fraction: i64 = padded.parse().ok()?;
        let millionths = (whole * 1_000_000 + fraction) / scale;
        let exact = (whole * 1_000_000 + fraction) % scale == 0;
        (exact && millionths > 0 && millionths <= 10_000_000).then_some(Ratio { millionths })
    }

    /// `ceil(units × ratio)`, exact.
    pub fn apply(self, units: i64) -> i64 {
        let product = i128::from(units) * i128::from(self.millionths);
        let rounded_up = (product + 999_999) / 1_000_000;
        i64::try_from(rounded_up).unwrap_or(i64::MAX)
    }
}

/// The annotation for a resource's ratio, if it has one.
pub fn ratio_annotation(resource: Resource) -> Option<&'static str> {
    match resource {
        Resource::Cpu => Some(PROXY_CPU_RATIO),
        Resource::Memory => Some(PROXY_MEMORY_RATIO),
        Resource::EphemeralStorage => None,
    }
}

/// The app containers' summed requests of `resource`, in base units (0 when none).
pub(crate) fn app_requests(pod: PodView<'_>, resource: Resource) -> i64 {
    pod.app_containers()
        .filter_map(|(_, amounts)| amounts.request_or_limit(resource))
        .fold(0i64, i64::saturating_add)
}

/// A container's request of `resource`, or its limit when it has no request (the API default).
pub fn request_or_limit(
    requests: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    limits: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    resource: Resource,
) -> Option<i64> {
    let parse = |map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
        map.and_then(|map| map.get(resource.name()))
            .and_then(|value| Quantity::parse(&value.0, resource.kind()).ok())
            .map(|quantity| quantity.units())
    };
    parse(requests).or_else(|| parse(limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fractions_and_percentages() {
        assert_eq!(Ratio::parse("0.1").map(|r| r.apply(1000)), Some(100));
        assert_eq!(Ratio::parse("10%").map(|r| r.apply(1000)), Some(100));
        assert_eq!(Ratio::parse(".25").map(|r| r.apply(4000)), Some(1000));
        assert_eq!(Ratio::parse("1").map(|r| r.apply(7)), Some(7));
        assert_eq!(Ratio::parse("0.333333").map(|r| r.apply(1000)), Some(334));
        for bad in ["", "0", "0%", "-0.1", "abc", "11", "0.1234567", "1e-1", "%", "."] {
            assert_eq!(Ratio::parse(bad), None, "{bad}");
        }
    }
}
