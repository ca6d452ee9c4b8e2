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

/// The kernel's rule for a device name (`dev_valid_name`): 1-15 bytes, not `.` or `..`, and
/// no `/`, `:` or whitespace; a comma would split the list `istio-iptables` reads.
fn check_interface(item: &str) -> Result<(), String> {
    let valid = item.len() <= 15
        && item != "."
        && item != ".."
        && !item
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(format!("{} is not a Linux interface name", quoted(item)))
    }
}
