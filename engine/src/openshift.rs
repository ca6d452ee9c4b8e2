//! OpenShift: the proxy runs as the last UID of its namespace's range.
//!
//! OpenShift's restricted SCC gives each namespace a UID range
//! (`openshift.io/sa.scc.uid-range: 1000620000/10000`) and a supplemental group range, and
//! rejects pods that ask for a UID outside it. As istiod does there, the proxy (and the
//! `-u` it tells iptables to exempt) takes the last UID of the range, and the last group
//! of the supplemental range (the UID range when that is absent). Without the annotation,
//! or in TPROXY mode (where the proxy runs as root anyway), the usual 1337 stays.

use std::collections::BTreeMap;

/// The namespace's supplemental group range.
pub use crate::annotations::OPENSHIFT_SUPPLEMENTAL_GROUPS as SUPPLEMENTAL_GROUPS;
/// The namespace's UID range.
pub use crate::annotations::OPENSHIFT_UID_RANGE as UID_RANGE;

/// The proxy's UID and GID from the namespace's annotations; `None` when there is no valid
/// UID range.
pub fn proxy_ids(namespace_annotations: Option<&BTreeMap<String, String>>) -> Option<(i64, i64)> {
    let annotations = namespace_annotations?;
    let uid = last_of_range(annotations.get(UID_RANGE)?)?;
    let gid = annotations
        .get(SUPPLEMENTAL_GROUPS)
        .and_then(|range| last_of_range(range))
        .unwrap_or(uid);
    Some((uid, gid))
}

/// The last ID of an OpenShift range, `start/size` or `start-end`; the first block of a
/// comma-separated list.
fn last_of_range(range: &str) -> Option<i64> {
    let first = range.split(',').next()?.trim();
    if let Some((start, size)) = first.split_once('/') {
        let (start, size) = (start.trim().parse::<i64>().ok()?, size.trim().parse::<i64>().ok()?);
        return (size > 0).then(|| start.checked_add(size - 1)).flatten();
    }
    let (start, end) = first.split_once('-')?;
    let (start, end) = (start.trim().parse::<i64>().ok()?, end.trim().parse::<i64>().ok()?);
    (end >= start).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn takes_the_last_id_of_each_range() {
        let both = annotations(&[
            (UID_RANGE, "1000620000/10000"),
            (SUPPLEMENTAL_GROUPS, "1000700000-1000700999"),
        ]);
        assert_eq!(proxy_ids(Some(&both)), Some((1000629999, 1000700999)));
        let uid_only = annotations(&[(UID_RANGE, "2000/10,3000/10")]);
        assert_eq!(proxy_ids(Some(&uid_only)), Some((2009, 2009)));
    }

    #[test]
    fn no_or_bad_range_means_none() {
        assert_eq!(proxy_ids(None), None);
        for bad in ["", "abc", "10/0", "10/x", "20-10", "9223372036854775807/10"] {
            assert_eq!(proxy_ids(Some(&annotations(&[(UID_RANGE, bad)]))), None, "{bad}");
        }
    }
}
