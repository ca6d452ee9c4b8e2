//! `traffic.sidecar.istio.io/*` annotations, validated, and the `istio-iptables` arguments built from them.
//!
//! Each value is checked before it reaches the init container: a bad CIDR or port would
//! otherwise surface only when `istio-init` crashes on the node. Valid values are passed
//! through as written, so the arguments match istiod's byte for byte.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::error::{InjectError, quoted};
use crate::capture_lists::{ListKind, check_list};
use crate::config::{InjectConfig, InterceptionMode};

/// Inbound ports to bypass.
pub use crate::annotations::EXCLUDE_INBOUND_PORTS;
/// Outbound CIDRs to bypass.
pub use crate::annotations::EXCLUDE_OUTBOUND_IP_RANGES;
/// Outbound ports to bypass.
pub use crate::annotations::EXCLUDE_OUTBOUND_PORTS;
/// Inbound ports to capture (`*` for all).
pub use crate::annotations::INCLUDE_INBOUND_PORTS;
/// Outbound CIDRs to capture (`*` for all).
pub use crate::annotations::INCLUDE_OUTBOUND_IP_RANGES;
/// Outbound ports to capture.
pub use crate::annotations::INCLUDE_OUTBOUND_PORTS;
/// Interception mode override.
pub use crate::annotations::INTERCEPTION_MODE;
/// Newer name for the same interface list.
pub use crate::annotations::REROUTE_VIRTUAL_INTERFACES;
/// Status port override.
pub use crate::annotations::STATUS_PORT;
/// KubeVirt interfaces whose traffic is captured.
pub use crate::annotations::{EXCLUDE_INTERFACES, KUBEVIRT_INTERFACES};

/// Envoy's outbound capture port.
const PROXY_OUTBOUND_PORT: &str = "15001";
/// Envoy's inbound capture port.
const PROXY_INBOUND_PORT: &str = "15006";
/// Ports of the proxy itself that inbound capture always skips.
const PROXY_OWN_PORTS: &str = "15090,15021";
/// The proxy's uid, whose traffic is not captured.
pub const PROXY_UID: i64 = 1337;
/// [`PROXY_UID`] as the init container's `-u` argument (a test checks they agree).
const PROXY_UID_TEXT: &str = "1337";

/// The agent's log level unless a pod or the config sets another.
const DEFAULT_LOG_LEVEL: &str = "default:info";
/// `istio-iptables`' argument for [`DEFAULT_LOG_LEVEL`] (a test checks they agree).
const DEFAULT_LOG_LEVEL_ARG: &str = "--log_output_level=default:info";

/// The validated traffic settings for one pod; each list is borrowed from the pod's
/// annotation or the config's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSettings<'a> {
    /// Interception mode.
    pub mode: InterceptionMode,
    include_outbound_ip_ranges: &'a str,
    exclude_outbound_ip_ranges: &'a str,
    include_inbound_ports: &'a str,
    exclude_inbound_ports: &'a str,
    include_outbound_ports: Option<&'a str>,
    exclude_outbound_ports: Option<&'a str>,
    virtual_interfaces: Option<&'a str>,
    exclude_interfaces: Option<&'a str>,
    /// The agent's status port (0 when disabled).
    pub status_port: u16,
}

// === impl TrafficSettings ===

impl<'a> TrafficSettings<'a> {
    /// Reads and validates the pod's traffic annotations over the config defaults.
    pub fn from_annotations(
        annotations: Option<&'a BTreeMap<String, String>>,
        config: &'a InjectConfig,
    ) -> Result<Self, InjectError> {
        let get = |key: &str| annotations.and_then(|map| map.get(key));
        let list = |key: &'static str, default: &'a str, kind: ListKind| -> Result<&'a str, InjectError> {
            let value = get(key).map(String::as_str).unwrap_or(default);
            check_list(value, kind).map_err(|reason| InjectError::InvalidAnnotation {
                annotation: key.into(),
                value: quoted(value),
                reason,
                accepted: kind.accepted(),
            })?;
            Ok(value)
        };
        let optional_list = |key: &'static str, default: &'a str, kind| -> Result<Option<&'a str>, InjectError> {
            if get(key).is_none() && default.is_empty() {
                return Ok(None);
            }
            list(key, default, kind).map(Some)
        };
        let mode = match get(INTERCEPTION_MODE) {
            None => config.interception_mode,
            Some(text) => InterceptionMode::parse(text).ok_or_else(|| InjectError::InvalidChoice {
                annotation: INTERCEPTION_MODE.into(),
                value: quoted(text),
                accepted: crate::annotations::INTERCEPTION_MODE_FORMS,
            })?,
        };
        let status_port = match get(STATUS_PORT) {
            None => config.status_port,
            Some(text) => text.trim().parse::<u16>().map_err(|_| InjectError::InvalidAnnotation {
                annotation: STATUS_PORT.into(),
                value: quoted(text),
                reason: "it is not a port".into(),
                accepted: crate::annotations::STATUS_PORT_FORMS,
            })?,
        };
        // istiod checks both names, though the newer one wins.
        let kubevirt = optional_list(KUBEVIRT_INTERFACES, "", ListKind::Interfaces)?;
        let reroute = optional_list(REROUTE_VIRTUAL_INTERFACES, "", ListKind::Interfaces)?;
        let virtual_interfaces = reroute.or(kubevirt).filter(|value| !value.is_empty());
        Ok(TrafficSettings {
            mode,
            include_outbound_ip_ranges: list(
                INCLUDE_OUTBOUND_IP_RANGES,
                &config.include_outbound_ip_ranges,
                ListKind::Cidrs { wildcard: true },
            )?,
            exclude_outbound_ip_ranges: list(
                EXCLUDE_OUTBOUND_IP_RANGES,
                &config.exclude_outbound_ip_ranges,
                ListKind::Cidrs { wildcard: false },
            )?,
            include_inbound_ports: list(INCLUDE_INBOUND_PORTS, "*", ListKind::Ports { wildcard: true })?,
            exclude_inbound_ports: list(
                EXCLUDE_INBOUND_PORTS,
                &config.exclude_inbound_ports,
                ListKind::Ports { wildcard: false },
            )?,
            include_outbound_ports: optional_list(INCLUDE_OUTBOUND_PORTS, "", ListKind::Ports { wildcard: false })?,
            exclude_outbound_ports: optional_list(
                EXCLUDE_OUTBOUND_PORTS,
                &config.exclude_outbound_ports,
                ListKind::Ports { wildcard: false },
            )?,
            virtual_interfaces,
            exclude_interfaces: optional_list(EXCLUDE_INTERFACES, "", ListKind::Interfaces)?,
            status_port,
        })
    }

    /// The excluded inbound ports with the status port added, as Istio lists them.
    fn excluded_inbound_with_status(&self) -> String {
        let mut ports = String::new();
        self.push_excluded_inbound_with_status(&mut ports);
        ports
    }

    /// Appends the excluded inbound ports with the status port added, after a comma when
    /// `out` is not empty.
    fn push_excluded_inbound_with_status(&self, out: &mut String) {
        let excluded = self.exclude_inbound_ports.trim();
        let mut status = itoa::Buffer::new();
        let status = (self.status_port != 0)
            .then(|| status.format(self.status_port))
            .filter(|status| !excluded.split(',').any(|port| port.trim() == *status));
        for part in [excluded].into_iter().chain(status).filter(|part| !part.is_empty()) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(part);
        }
    }

    /// The inbound ports that bypass capture: the proxy's own, the excluded ones and the status port.
    fn inbound_bypass_ports(&self) -> String {
        let mut ports = String::with_capacity(PROXY_OWN_PORTS.len() + self.exclude_inbound_ports.len() + 8);
        ports.push_str(PROXY_OWN_PORTS);
        self.push_excluded_inbound_with_status(&mut ports);
        ports
    }

    /// The pod annotations Istio CNI reads to install the rules itself.
    pub fn cni_annotations(&self) -> Vec<(String, String)> {
        let mut annotations = vec![
            (INTERCEPTION_MODE.to_string(), self.mode.as_str().to_string()),
            (
                INCLUDE_INBOUND_PORTS.to_string(),
                self.include_inbound_ports.to_string(),
            ),
            (EXCLUDE_INBOUND_PORTS.to_string(), self.excluded_inbound_with_status()),
            (
                INCLUDE_OUTBOUND_IP_RANGES.to_string(),
                self.include_outbound_ip_ranges.to_string(),
            ),
        ];
        if !self.exclude_outbound_ip_ranges.is_empty() {
            annotations.push((
                EXCLUDE_OUTBOUND_IP_RANGES.to_string(),
                self.exclude_outbound_ip_ranges.to_string(),
            ));
        }
        let optional = [
            (INCLUDE_OUTBOUND_PORTS, self.include_outbound_ports),
            (EXCLUDE_OUTBOUND_PORTS, self.exclude_outbound_ports),
            (KUBEVIRT_INTERFACES, self.virtual_interfaces),
            (EXCLUDE_INTERFACES, self.exclude_interfaces),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                annotations.push((key.to_string(), value.to_string()));
            }
        }
        annotations
    }

    /// The arguments of `istio-init` (or `istio-validation` when `validation_only`).
    pub fn iptables_args(&self, validation_only: bool, proxy_uid: i64, log_level: &str) -> Vec<Cow<'_, str>> {
        let mut args: Vec<Cow<'_, str>> = Vec::with_capacity(30);
        args.extend(
            [
                "istio-iptables",
                "-p",
                PROXY_OUTBOUND_PORT,
                "-z",
                PROXY_INBOUND_PORT,
                "-u",
            ]
            .map(Cow::Borrowed),
        );
        args.push(if proxy_uid == PROXY_UID {
            Cow::Borrowed(PROXY_UID_TEXT)
        } else {
            Cow::Owned(proxy_uid.to_string())
        });
        args.extend(
            [
                "-m",
                self.mode.as_str(),
                "-i",
                self.include_outbound_ip_ranges,
                "-x",
                self.exclude_outbound_ip_ranges,
                "-b",
                self.include_inbound_ports,
                "-d",
            ]
            .map(Cow::Borrowed),
        );
        args.push(Cow::Owned(self.inbound_bypass_ports()));
        let optional = [
            ("-q", self.include_outbound_ports),
            ("-o", self.exclude_outbound_ports),
            ("-k", self.virtual_interfaces),
            ("-c", self.exclude_interfaces),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                args.extend([Cow::Borrowed(flag), Cow::Borrowed(value)]);
            }
        }
        args.push(if log_level == DEFAULT_LOG_LEVEL {
            Cow::Borrowed(DEFAULT_LOG_LEVEL_ARG)
        } else {
            Cow::Owned(format!("--log_output_level={log_level}"))
        });
        if validation_only {
            args.extend(["--run-validation", "--skip-rule-apply"].map(Cow::Borrowed));
        }
        args
    }
}

/// `k8s.v1.cni.cncf.io/networks` with Istio CNI's attachment in `namespace` added to the
/// pod's own list, flat (`a, b`) or JSON, whichever the pod used.
pub fn multus_networks(existing: Option<&str>, namespace: &str) -> String {
    let ours = format!("{namespace}/istio-cni");
    let existing = existing.map(str::trim).unwrap_or_default();
    if existing.is_empty() {
        return ours;
    }
    if let Ok(mut list) = serde_json::from_str::<Vec<serde_json::Value>>(existing) {
        if !list.iter().any(|network| network["name"] == "istio-cni") {
            list.push(serde_json::json!({"name": "istio-cni", "namespace": namespace}));
        }
        return serde_json::Value::Array(list).to_string();
    }
    let present = existing
        .split(',')
        .map(str::trim)
        .any(|network| network == "istio-cni" || network == ours);
    if present {
        existing.to_string()
    } else {
        format!("{existing}, {ours}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_uid_argument_is_the_proxy_uid() {
        assert_eq!(PROXY_UID_TEXT, PROXY_UID.to_string());
    }

    #[test]
    fn the_default_log_level_argument_names_the_default_level() {
        assert_eq!(DEFAULT_LOG_LEVEL_ARG, format!("--log_output_level={DEFAULT_LOG_LEVEL}"));
        let settings = settings(&[]).unwrap();
        let args = settings.iptables_args(false, PROXY_UID, "default:debug");
        assert!(
            args.iter().any(|arg| arg == "--log_output_level=default:debug"),
            "{args:?}"
        );
    }

    /// The settings of a pod with these annotations; the annotations and the config are
    /// leaked, as the settings borrow from them and each test reads them to its end.
    fn settings(pairs: &[(&str, &str)]) -> Result<TrafficSettings<'static>, InjectError> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TrafficSettings::from_annotations(Some(Box::leak(Box::new(map))), Box::leak(Box::default()))
    }

    #[test]
    fn default_args_match_istio() {
        let args = settings(&[])
            .unwrap()
            .iptables_args(false, PROXY_UID, "default:info")
            .into_iter()
            .map(Cow::into_owned)
            .collect::<Vec<_>>();
        let expected = "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i * -x  -b * -d 15090,15021,15020 --log_output_level=default:info";
        assert_eq!(args.join(" "), expected);
    }

    #[test]
    fn annotations_become_args_in_istio_order() {
        let args = settings(&[
            (INCLUDE_INBOUND_PORTS, "1,2,3"),
            (EXCLUDE_INBOUND_PORTS, "4,5,6"),
            (EXCLUDE_OUTBOUND_PORTS, "7,8,9"),
            (INCLUDE_OUTBOUND_PORTS, "10"),
            (INCLUDE_OUTBOUND_IP_RANGES, "127.0.0.1/24,10.96.0.1/24"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.96.0.2/24,fd00::/8"),
        ])
        .unwrap()
        .iptables_args(true, PROXY_UID, "default:info")
        .into_iter()
        .map(Cow::into_owned)
        .collect::<Vec<_>>();
        let expected = "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i 127.0.0.1/24,10.96.0.1/24 -x 10.96.0.2/24,fd00::/8 -b 1,2,3 -d 15090,15021,4,5,6,15020 -q 10 -o 7,8,9 --log_output_level=default:info --run-validation --skip-rule-apply";
        assert_eq!(args.join(" "), expected);
    }

    #[test]
    fn excluded_interfaces_follow_virtual_ones_and_bad_names_are_denied() {
        let args = settings(&[(KUBEVIRT_INTERFACES, "net1"), (EXCLUDE_INTERFACES, "eth1,cali-0.2")])
            .unwrap()
            .iptables_args(false, PROXY_UID, "default:info")
            .into_iter()
            .map(Cow::into_owned)
            .collect::<Vec<_>>();
        let tail = args.join(" ");
        assert!(
            tail.ends_with("-k net1 -c eth1,cali-0.2 --log_output_level=default:info"),
            "{tail}"
        );
        let cni = settings(&[(EXCLUDE_INTERFACES, "eth1")]).unwrap().cni_annotations();
        assert!(cni.contains(&(EXCLUDE_INTERFACES.to_string(), "eth1".to_string())));
        for key in [EXCLUDE_INTERFACES, KUBEVIRT_INTERFACES, REROUTE_VIRTUAL_INTERFACES] {
            for bad in [
                "eth0 -j ACCEPT",
                "a/b",
                "averyveryverylongname",
                "eth0,,eth1",
                "eth0,",
                ",eth0",
                " ",
                "..",
                "1eth",
                "-eth",
                "eth@0",
            ] {
                let error = settings(&[(key, bad)]).unwrap_err().to_string();
                assert!(
                    error.contains(key)
                        && error.contains(&format!("{bad:?}"))
                        && error.contains("Linux interface names"),
                    "{key}={bad:?}: {error}"
                );
            }
            for good in ["", "eth1", " net1 , net2", "cali-0.2", "veth_a.b-c", "abcdefghijklmno"] {
                assert!(settings(&[(key, good)]).is_ok(), "{key}={good:?}");
            }
        }
        assert!(
            !settings(&[])
                .unwrap()
                .iptables_args(false, PROXY_UID, "default:info")
                .into_iter()
                .map(Cow::into_owned)
                .collect::<Vec<_>>()
                .iter()
                .any(|arg| arg == "-c")
        );
    }

    #[test]
    fn status_port_zero_or_listed_is_not_repeated() {
        let args = settings(&[(STATUS_PORT, "0")])
            .unwrap()
            .iptables_args(false, PROXY_UID, "default:info")
            .into_iter()
            .map(Cow::into_owned)
            .collect::<Vec<_>>();
        assert!(args.iter().any(|arg| arg == "15090,15021"));
        let args = settings(&[(EXCLUDE_INBOUND_PORTS, "15020,8")])
            .unwrap()
            .iptables_args(false, PROXY_UID, "default:info")
            .into_iter()
            .map(Cow::into_owned)
            .collect::<Vec<_>>();
        assert!(args.iter().any(|arg| arg == "15090,15021,15020,8"));
    }

    #[test]
    fn bad_values_are_named() {
        let table = [
            (INCLUDE_OUTBOUND_IP_RANGES, "bad"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "*"),
            (INCLUDE_INBOUND_PORTS, "bad"),
            (EXCLUDE_INBOUND_PORTS, "*"),
            (EXCLUDE_OUTBOUND_PORTS, "70000"),
            (INCLUDE_OUTBOUND_PORTS, "0"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.1"),
            (INCLUDE_INBOUND_PORTS, "80,,81"),
            (INTERCEPTION_MODE, "MAGIC"),
            (STATUS_PORT, "-1"),
        ];
        for (key, value) in table {
            let error = settings(&[(key, value)]).expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
            assert!(error.contains(&format!("{value:?}")), "{error}");
        }
    }
}
