//! The comma-separated port and CIDR lists of traffic capture, checked the way
//! `istio-iptables` will read them, for both the config file and pod annotations.

use std::net::IpAddr;

use crate::annotations::{CIDRS_FORMS, CIDRS_OR_ALL_FORMS, INTERFACES_FORMS, PORTS_FORMS, PORTS_OR_ALL_FORMS};
use crate::error::quoted;

/// The form a list annotation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Ports 1-65535.
    Ports { wildcard: bool },
    /// IPv4 or IPv6 CIDRs.
    Cidrs { wildcard: bool },
    /// Linux interface names.
    Interfaces,
}

impl ListKind {
    pub(crate) fn accepted(self) -> &'static str {
        match self {
            ListKind::Ports { wildcard: true } => PORTS_OR_ALL_FORMS,
            ListKind::Ports { wildcard: false } => PORTS_FORMS,
            ListKind::Cidrs { wildcard: true } => CIDRS_OR_ALL_FORMS,
            ListKind::Cidrs { wildcard: false } => CIDRS_FORMS,
            ListKind::Interfaces => INTERFACES_FORMS,
        }
    }
}

/// Checks one list value, returning the reason it is wrong.
pub(crate) fn check_list(value: &str, kind: ListKind) -> Result<(), String> {
    if kind == ListKind::Interfaces {
        return check_interfaces(value);
    }
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
            ListKind::Interfaces => check_interface(item)?,
        }
    }
    Ok(())
}

/// An interface list as istiod checks one (`ValidateInterfaceNames`): empty, or names
/// separated by commas, each trimmed and none empty, so `" "` and `"eth0,"` are refused.
fn check_interfaces(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("it has an empty interface name".into());
        }
        check_interface(item)?;
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

/// istiod's rule for an interface name: a letter, then letters, digits, `_`, `.` or `-`, at
/// most 15 characters (the kernel's limit). It is stricter than the kernel's own rule, and
/// keeps out anything `istio-iptables` could read as another argument.
fn check_interface(item: &str) -> Result<(), String> {
    let mut chars = item.chars();
    let valid = item.len() <= 15
        && chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!("{} is not a Linux interface name", quoted(item)))
    }
}
