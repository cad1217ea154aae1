//! The rules a configuration must follow.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::raw::{RawCarp, RawConfig};
use super::{CarpConfig, Config, ConfigError, DEFAULT_CONTROL_SOCKET, DEFAULT_PIN_DIR, Passphrase};
use crate::groups::CARP_GROUP;
use crate::wire::MAX_PASSPHRASE;

/// Linux's IFNAMSIZ less the terminating NUL.
pub(super) const MAX_IFNAME: usize = 15;
/// Seconds the boot interlock may hold the node demoted by default.
const DEFAULT_BOOT_TIMEOUT_S: i64 = 60;
const MAX_BOOT_TIMEOUT_S: u64 = 3600;

pub(super) struct Context<'a> {
    pub path: &'a Path,
    pub location: String,
}

impl Context<'_> {
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.display().to_string(),
            location: self.location.clone(),
            message: message.into(),
        }
    }
}

pub fn validate(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let top = Context {
        path,
        location: "top level".into(),
    };
    let metrics_listen = match raw.metrics_listen {
        Some(text) => Some(text.parse().map_err(|_| {
            top.error(format!(
                "metrics_listen \"{text}\" is not an address:port such as 127.0.0.1:9117"
            ))
        })?),
        None => None,
    };
    if raw.carp.is_empty() {
        return Err(top.error("no [[carp]] table: configure at least one carp interface"));
    }
    let mut carp = Vec::with_capacity(raw.carp.len());
    for (index, table) in raw.carp.into_iter().enumerate() {
        let shown = table.name.clone().unwrap_or_default();
        let context = Context {
            path,
            location: format!("carp[{index}] ({shown})"),
        };
        carp.push(validate_carp(table, &context)?);
    }
    check_uniqueness(&carp, path)?;
    let boot_timeout = Duration::from_secs(number(
        raw.boot_timeout.unwrap_or(DEFAULT_BOOT_TIMEOUT_S),
        1,
        MAX_BOOT_TIMEOUT_S,
        "boot_timeout",
        &top,
    )?);
    let hooks = super::track::hooks(raw.hooks, path)?;
    let sync = super::sync::sync(raw.sync, path)?;
    let track = super::track::trackers(raw.track, &carp, path)?;
    let pin_dir = raw
        .pin_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
    if !pin_dir.is_absolute() {
        return Err(top.error(format!(
            "pin_dir {} must be an absolute path",
            pin_dir.display()
        )));
    }
    Ok(Config {
        preempt: raw.preempt.unwrap_or(false),
        control_socket: raw
            .control_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        metrics_listen,
        pin_dir,
        carp,
        boot_timeout,
        hooks,
        track,
        sync,
        path: path.to_owned(),
    })
}

fn validate_carp(table: RawCarp, context: &Context<'_>) -> Result<CarpConfig, ConfigError> {
    let name = table.name.ok_or_else(|| context.error("name is missing"))?;
    check_ifname(&name, "name", context)?;
    let carpdev = table
        .carpdev
        .ok_or_else(|| context.error("carpdev is missing"))?;
    check_ifname(&carpdev, "carpdev", context)?;
    let addresses = addresses(table.addresses, context)?;
    let balancing = super::balancing::balancing(
        table.balancing,
        table.nodes,
        table.vhid.is_some() || table.advskew.is_some(),
        &addresses,
        table.peer.is_some(),
        context,
    )?;
    let (vhid, advskew) = if let Some(balancing) = &balancing {
        (balancing.nodes[0].vhid, balancing.nodes[0].advskew)
    } else {
        let vhid = table.vhid.ok_or_else(|| context.error("vhid is missing"))?;
        (
            in_range(vhid, 1, 255, "vhid", context)?,
            in_range(table.advskew.unwrap_or(0), 0, 254, "advskew", context)?,
        )
    };
    let advbase = in_range(table.advbase.unwrap_or(1), 0, 255, "advbase", context)?;
    let pass = passphrase(table.pass, table.pass_file, context)?;
    let groups = groups(table.groups, context)?;
    let peer = match table.peer {
        Some(text) => Some(peer(&text, &addresses, context)?),
        None => None,
    };
    Ok(CarpConfig {
        name,
        carpdev,
        vhid,
        pass,
        advbase,
        advskew,
        addresses,
        groups,
        peer,
        freebsd_compat: table.freebsd_compat.unwrap_or(false),
        balancing,
    })
}

pub(super) fn check_ifname(
    value: &str,
    key: &str,
    context: &Context<'_>,
) -> Result<(), ConfigError> {
    let bad = value.is_empty()
        || value.len() > MAX_IFNAME
        || value == "."
        || value == ".."
        || value
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad {
        return Err(context.error(format!(
            "{key} \"{value}\" is not a valid interface name (1..{MAX_IFNAME} bytes, no '/', ':' or whitespace)"
        )));
    }
    // Per-interface sysctls are addressed with dotted keys.
    if value.contains('.') {
        return Err(context.error(format!(
            "{key} \"{value}\": interface names with '.' are not supported"
        )));
    }
    Ok(())
}

fn in_range(
    value: i64,
    min: u8,
    max: u8,
    key: &str,
    context: &Context<'_>,
) -> Result<u8, ConfigError> {
    let value = number(value, u64::from(min), u64::from(max), key, context)?;
    // In min..=max, so it fits.
    Ok(u8::try_from(value).unwrap_or(max))
}

/// `value` as a u64 in `min..=max`, or an error naming `key`.
pub(super) fn number(
    value: i64,
    min: u64,
    max: u64,
    key: &str,
    context: &Context<'_>,
) -> Result<u64, ConfigError> {
    u64::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| context.error(format!("{key} {value} out of range {min}..{max}")))
}

fn passphrase(
    pass: Option<String>,
    pass_file: Option<PathBuf>,
    context: &Context<'_>,
) -> Result<Passphrase, ConfigError> {
    let bytes = match (pass, pass_file) {
        (Some(_), Some(_)) => return Err(context.error("pass and pass_file are both set; use one")),
        (None, None) => return Err(context.error("pass (or pass_file) is missing")),
        (Some(pass), None) => pass.into_bytes(),
        (None, Some(file)) => read_pass_file(&file, context)?,
    };
    if bytes.len() > MAX_PASSPHRASE {
        return Err(context.error(format!(
            "pass is {} bytes, at most {MAX_PASSPHRASE}",
            bytes.len()
        )));
    }
    Ok(Passphrase(bytes))
}

fn read_pass_file(file: &Path, context: &Context<'_>) -> Result<Vec<u8>, ConfigError> {
    let resolved = if file.is_relative() {
        context
            .path
            .parent()
            .map_or_else(|| file.to_owned(), |dir| dir.join(file))
    } else {
        file.to_owned()
    };
    let mut bytes = std::fs::read(&resolved)
        .map_err(|error| context.error(format!("pass_file {}: {error}", resolved.display())))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if let Ok(metadata) = std::fs::metadata(&resolved) {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{}: pass_file {} is readable by group or others; chmod 600 it",
                context.location,
                resolved.display()
            );
        }
    }
    Ok(bytes)
}

fn addresses(list: Option<Vec<String>>, context: &Context<'_>) -> Result<Vec<IpNet>, ConfigError> {
    let list = list.ok_or_else(|| context.error("addresses is missing"))?;
    if list.is_empty() {
        return Err(
            context.error("addresses is empty: a carp interface needs at least one address")
        );
    }
    let mut seen = BTreeSet::new();
    let mut nets = Vec::with_capacity(list.len());
    for text in list {
        let net: IpNet = text.parse().map_err(|_| {
            context.error(format!(
                "address \"{text}\" is not in CIDR form (192.0.2.1/24 or 2001:db8::1/64)"
            ))
        })?;
        let address = net.addr();
        if address.is_multicast() || address.is_unspecified() || address.is_loopback() {
            return Err(context.error(format!("address {net} cannot be a virtual address")));
        }
        if !seen.insert(address) {
            return Err(context.error(format!("address {address} is listed twice")));
        }
        nets.push(net);
    }
    Ok(nets)
}

fn groups(configured: Vec<String>, context: &Context<'_>) -> Result<Vec<String>, ConfigError> {
    let mut groups = vec![CARP_GROUP.to_owned()];
    for group in configured {
        let valid = !group.is_empty()
            && group.len() <= MAX_IFNAME
            && !group.ends_with(|c: char| c.is_ascii_digit())
            && group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(context.error(format!(
                "group \"{group}\" is not a valid group name (1..{MAX_IFNAME} letters, digits, '-' or '_', not ending in a digit)"
            )));
        }
        if groups.contains(&group) {
            return Err(context.error(format!(
                "group \"{group}\" is listed twice (carp is implicit)"
            )));
        }
        groups.push(group);
    }
    Ok(groups)
}

fn peer(text: &str, addresses: &[IpNet], context: &Context<'_>) -> Result<IpAddr, ConfigError> {
    let peer: IpAddr = text
        .parse()
        .map_err(|_| context.error(format!("peer \"{text}\" is not an IP address")))?;
    if peer.is_multicast() || peer.is_unspecified() {
        return Err(context.error(format!("peer {peer} must be a unicast address")));
    }
    if !addresses
        .iter()
        .any(|n| n.addr().is_ipv4() == peer.is_ipv4())
    {
        return Err(context.error(format!(
            "peer {peer}: the carp interface has no address of that family to advertise"
        )));
    }
    Ok(peer)
}

fn check_uniqueness(carp: &[CarpConfig], path: &Path) -> Result<(), ConfigError> {
    let carpdevs: BTreeSet<&str> = carp.iter().map(|c| c.carpdev.as_str()).collect();
    for (index, table) in carp.iter().enumerate() {
        let context = Context {
            path,
            location: format!("carp[{index}] ({})", table.name),
        };
        for earlier in &carp[..index] {
            if earlier.name == table.name {
                return Err(context.error(format!("name {} is used twice", table.name)));
            }
            let taken = earlier.nodes();
            let clash = table
                .nodes()
                .into_iter()
                .find(|node| taken.iter().any(|t| t.vhid == node.vhid));
            if let Some(node) = clash
                && earlier.carpdev == table.carpdev
            {
                return Err(context.error(format!(
                    "vhid {} on {} is already used by {}",
                    node.vhid, table.carpdev, earlier.name
                )));
            }
        }
        if carpdevs.contains(table.name.as_str()) {
            return Err(context.error(format!("name {} is also used as a carpdev", table.name)));
        }
    }
    Ok(())
}
