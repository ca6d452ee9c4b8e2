//! `traffic.sidecar.istio.io/*` annotations, validated, and the `istio-iptables` arguments built from them.
//!
//! Each value is checked before it reaches the init container: a bad CIDR or port would
//! otherwise surface only when `istio-init` crashes on the node. Valid values are passed
//! through as written, so the arguments match istiod's byte for byte.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::error::{InjectError, quoted};
use crate::config::{ConfigError, InjectConfig, InterceptionMode};

/// Outbound CIDRs to capture (`*` for all).
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
/// Outbound CIDRs to bypass.
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
/// Inbound ports to capture (`*` for all).
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
/// Inbound ports to bypass.
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
/// Outbound ports to capture.
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
/// Outbound ports to bypass.
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
/// KubeVirt interfaces whose traffic is captured.
pub const KUBEVIRT_INTERFACES: &str = "traffic.sidecar.istio.io/kubevirtInterfaces";
/// Newer name for the same interface list.
pub const REROUTE_VIRTUAL_INTERFACES: &str = "istio.io/reroute-virtual-interfaces";
/// Interception mode override.
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
/// Status port override.
pub const STATUS_PORT: &str = "status.sidecar.istio.io/port";

/// Envoy's outbound capture port.
const PROXY_OUTBOUND_PORT: &str = "15001";
/// Envoy's inbound capture port.
const PROXY_INBOUND_PORT: &str = "15006";
/// Ports of the proxy itself that inbound capture always skips.
const PROXY_OWN_PORTS: &str = "15090,15021";
/// The proxy's uid, whose traffic is not captured.
pub const PROXY_UID: i64 = 1337;

/// The form a list annotation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// Ports 1-65535.
    Ports { wildcard: bool },
    /// IPv4 or IPv6 CIDRs.
    Cidrs { wildcard: bool },
}

impl ListKind {
    fn accepted(self) -> &'static str {
        match self {
            ListKind::Ports { wildcard: true } => "\"*\" or comma-separated ports 1-65535, e.g. 80,8080",
            ListKind::Ports { wildcard: false } => "comma-separated ports 1-65535, e.g. 80,8080",
            ListKind::Cidrs { wildcard: true } => "\"*\" or comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8",
            ListKind::Cidrs { wildcard: false } => "comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8",
        }
    }
}

/// Checks one list value, returning the reason it is wrong.
fn check_list(value: &str, kind: ListKind) -> Result<(), String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(());
    }
    let wildcard_allowed = matches!(
        kind,
        ListKind::Ports { wildcard: true } | ListKind::Cidrs { wildcard: true }
    );
    if trimmed == "*" {
        return if wildcard_allowed {
            Ok(())
        } else {
            Err("\"*\" is not allowed here".into())
        };
    }
    for item in trimmed.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("it has an empty item".into());
        }
        match kind {
            ListKind::Ports { .. } => check_port(item)?,
            ListKind::Cidrs { .. } => check_cidr(item)?,
        }
    }
    Ok(())
}

fn check_port(item: &str) -> Result<(), String> {
    match item.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("{} is not a port 1-65535", quoted(item))),
    }
}

fn check_cidr(item: &str) -> Result<(), String> {
    let invalid = || format!("{} is not a CIDR", quoted(item));
    let (address, prefix) = item.split_once('/').ok_or_else(invalid)?;
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let max_prefix = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(bits) if bits <= max_prefix && !prefix.starts_with('+') => Ok(()),
        _ => Err(invalid()),
    }
}

/// The validated traffic settings for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSettings {
    /// Interception mode.
    pub mode: InterceptionMode,
    include_outbound_ip_ranges: String,
    exclude_outbound_ip_ranges: String,
    include_inbound_ports: String,
    exclude_inbound_ports: String,
    include_outbound_ports: Option<String>,
    exclude_outbound_ports: Option<String>,
    virtual_interfaces: Option<String>,
    /// The agent's status port (0 when disabled).
    pub status_port: u16,
}

// === impl TrafficSettings ===

impl TrafficSettings {
    /// Reads and validates the pod's traffic annotations over the config defaults.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
        config: &InjectConfig,
    ) -> Result<Self, InjectError> {
        let get = |key: &str| annotations.and_then(|map| map.get(key));
        let list = |key: &'static str, default: &str, kind: ListKind| -> Result<String, InjectError> {
            let value = get(key).map(String::as_str).unwrap_or(default);
            check_list(value, kind).map_err(|reason| InjectError::InvalidAnnotation {
                annotation: key.into(),
                value: quoted(value),
                reason,
                accepted: kind.accepted(),
            })?;
            Ok(value.to_string())
        };
        let optional_list = |key: &'static str, default: &str, kind| -> Result<Option<String>, InjectError> {
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
                accepted: "REDIRECT, TPROXY or NONE",
            })?,
        };
        let status_port = match get(STATUS_PORT) {
            None => config.status_port,
            Some(text) => text.trim().parse::<u16>().map_err(|_| InjectError::InvalidAnnotation {
                annotation: STATUS_PORT.into(),
                value: quoted(text),
                reason: "it is not a port".into(),
                accepted: "a port 0-65535 (0 disables the status server)",
            })?,
        };
        let virtual_interfaces = get(REROUTE_VIRTUAL_INTERFACES)
            .or_else(|| get(KUBEVIRT_INTERFACES))
            .filter(|value| !value.is_empty())
            .cloned();
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
            status_port,
        })
    }

    /// The excluded inbound ports with the status port added, as Istio lists them.
    fn excluded_inbound_with_status(&self) -> String {
        let mut ports = self.exclude_inbound_ports.trim().to_string();
        if self.status_port != 0 {
            let status = self.status_port.to_string();
            if !ports.split(',').any(|port| port.trim() == status) {
                if !ports.is_empty() {
                    ports.push(',');
                }
                ports.push_str(&status);
            }
        }
        ports
    }

    /// The inbound ports that bypass capture: the proxy's own, the excluded ones and the status port.
    fn inbound_bypass_ports(&self) -> String {
        let excluded = self.excluded_inbound_with_status();
        if excluded.is_empty() {
            PROXY_OWN_PORTS.to_string()
        } else {
            format!("{PROXY_OWN_PORTS},{excluded}")
        }
    }

    /// The pod annotations Istio CNI reads to install the rules itself.
    pub fn cni_annotations(&self) -> Vec<(String, String)> {
        let mut annotations = vec![
            (INTERCEPTION_MODE.to_string(), self.mode.as_str().to_string()),
            (INCLUDE_INBOUND_PORTS.to_string(), self.include_inbound_ports.clone()),
            (EXCLUDE_INBOUND_PORTS.to_string(), self.excluded_inbound_with_status()),
            (
                INCLUDE_OUTBOUND_IP_RANGES.to_string(),
                self.include_outbound_ip_ranges.clone(),
            ),
        ];
        if !self.exclude_outbound_ip_ranges.is_empty() {
            annotations.push((
                EXCLUDE_OUTBOUND_IP_RANGES.to_string(),
                self.exclude_outbound_ip_ranges.clone(),
            ));
        }
        let optional = [
            (INCLUDE_OUTBOUND_PORTS, &self.include_outbound_ports),
            (EXCLUDE_OUTBOUND_PORTS, &self.exclude_outbound_ports),
            (KUBEVIRT_INTERFACES, &self.virtual_interfaces),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                annotations.push((key.to_string(), value.clone()));
            }
        }
        annotations
    }

    /// The arguments of `istio-init` (or `istio-validation` when `validation_only`).
    pub fn iptables_args(&self, validation_only: bool, proxy_uid: i64) -> Vec<String> {
        let proxy_uid = proxy_uid.to_string();
        let mut args: Vec<String> = [
            "istio-iptables",
            "-p",
            PROXY_OUTBOUND_PORT,
            "-z",
            PROXY_INBOUND_PORT,
            "-u",
            &proxy_uid,
            "-m",
            self.mode.as_str(),
            "-i",
            &self.include_outbound_ip_ranges,
            "-x",
            &self.exclude_outbound_ip_ranges,
            "-b",
            &self.include_inbound_ports,
            "-d",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.push(self.inbound_bypass_ports());
        if let Some(ports) = &self.include_outbound_ports {
            args.extend(["-q".to_string(), ports.clone()]);
        }
        if let Some(ports) = &self.exclude_outbound_ports {
            args.extend(["-o".to_string(), ports.clone()]);
        }
        if let Some(interfaces) = &self.virtual_interfaces {
            args.extend(["-k".to_string(), interfaces.clone()]);
        }
        args.push("--log_output_level=default:info".into());
        if validation_only {
            args.extend(["--run-validation".to_string(), "--skip-rule-apply".to_string()]);
        }
        args
    }
}

/// Checks the traffic defaults in the config file with the same rules as annotations.
pub fn validate_config(config: &InjectConfig) -> Result<(), ConfigError> {
    let checks = [
        (
            "includeOutboundIPRanges",
            &config.include_outbound_ip_ranges,
            ListKind::Cidrs { wildcard: true },
        ),
        (
            "excludeOutboundIPRanges",
            &config.exclude_outbound_ip_ranges,
            ListKind::Cidrs { wildcard: false },
        ),
        (
            "excludeInboundPorts",
            &config.exclude_inbound_ports,
            ListKind::Ports { wildcard: false },
        ),
        (
            "excludeOutboundPorts",
            &config.exclude_outbound_ports,
            ListKind::Ports { wildcard: false },
        ),
    ];
    for (key, value, kind) in checks {
        check_list(value, kind).map_err(|reason| ConfigError::Invalid {
            key: key.into(),
            value: value.clone(),
            reason: format!("{reason} (accepted: {})", kind.accepted()),
        })?;
    }
    Ok(())
}

/// Multus' network list annotation.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

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

    fn settings(pairs: &[(&str, &str)]) -> Result<TrafficSettings, InjectError> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TrafficSettings::from_annotations(Some(&map), &InjectConfig::default())
    }

    #[test]
    fn default_args_match_istio() {
        let args = settings(&[]).unwrap().iptables_args(false, PROXY_UID);
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
        .iptables_args(true, PROXY_UID);
        let expected = "istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i 127.0.0.1/24,10.96.0.1/24 -x 10.96.0.2/24,fd00::/8 -b 1,2,3 -d 15090,15021,4,5,6,15020 -q 10 -o 7,8,9 --log_output_level=default:info --run-validation --skip-rule-apply";
        assert_eq!(args.join(" "), expected);
    }

    #[test]
    fn status_port_zero_or_listed_is_not_repeated() {
        let args = settings(&[(STATUS_PORT, "0")]).unwrap().iptables_args(false, PROXY_UID);
        assert!(args.contains(&"15090,15021".to_string()));
        let args = settings(&[(EXCLUDE_INBOUND_PORTS, "15020,8")])
            .unwrap()
            .iptables_args(false, PROXY_UID);
        assert!(args.contains(&"15090,15021,15020,8".to_string()));
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
