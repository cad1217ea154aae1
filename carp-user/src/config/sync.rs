//! The `[sync]` table: conntrack state sync with the peer (the pfsync role).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::raw::RawSync;
use super::validate::{Context, check_ifname, number};
use super::{ConfigError, Passphrase};
use crate::sync::flow::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// UDP port of the sync protocol.
pub const DEFAULT_SYNC_PORT: u16 = crate::sync::wire::DEFAULT_PORT;
/// A sync key shorter than this is refused (HMAC-SHA256 wants at least
/// 128 bits of secret).
pub const MIN_SYNC_KEY: usize = crate::sync::wire::MIN_KEY_LEN;
const MAX_SYNC_KEY: usize = 1024;
const DEFAULT_BULK_TIMEOUT_S: i64 = 30;
const MAX_BULK_TIMEOUT_S: u64 = 3600;

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The interface the sync link is on.
    pub syncdev: String,
    /// The peer, unicast; multicast on the syncdev when absent.
    pub peer: Option<IpAddr>,
    pub port: u16,
    /// The shared key (from `key_file`), never logged.
    pub key: Passphrase,
    /// IP protocols replicated (`tcp`, `udp`, `icmp`, `icmpv6`).
    pub protocols: BTreeSet<u8>,
    /// Flows with an endpoint in one of these are not replicated.
    pub ignore: Vec<IpNet>,
    /// A bulk update not done by then is given up (and its demotion
    /// released).
    pub bulk_timeout: Duration,
}

pub fn sync(raw: Option<RawSync>, path: &Path) -> Result<Option<SyncConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let context = Context {
        path,
        location: "sync".into(),
    };
    let syncdev = raw
        .syncdev
        .ok_or_else(|| context.error("syncdev is missing"))?;
    check_ifname(&syncdev, "syncdev", &context)?;
    let peer = match raw.syncpeer {
        Some(text) => Some(
            text.parse::<IpAddr>()
                .map_err(|_| context.error(format!("syncpeer \"{text}\" is not an IP address")))?,
        ),
        None => None,
    };
    let port = number(
        raw.port.unwrap_or(i64::from(DEFAULT_SYNC_PORT)),
        1,
        u64::from(u16::MAX),
        "port",
        &context,
    )?;
    let key_file = raw
        .key_file
        .ok_or_else(|| context.error("key_file is missing (a file of at least 16 random bytes)"))?;
    let key = read_key(&key_file, &context)?;
    let protocols = protocols(raw.protocols, &context)?;
    let mut ignore = Vec::new();
    for text in raw.ignore.unwrap_or_default() {
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                context.error(format!("ignore \"{text}\" is not an address or network"))
            })?;
        ignore.push(net);
    }
    let bulk_timeout = Duration::from_secs(number(
        raw.bulk_timeout.unwrap_or(DEFAULT_BULK_TIMEOUT_S),
        1,
        MAX_BULK_TIMEOUT_S,
        "bulk_timeout",
        &context,
    )?);
    Ok(Some(SyncConfig {
        syncdev,
        peer,
        port: u16::try_from(port).unwrap_or(DEFAULT_SYNC_PORT),
        key,
        protocols,
        ignore,
        bulk_timeout,
    }))
}

fn protocols(raw: Option<Vec<String>>, context: &Context<'_>) -> Result<BTreeSet<u8>, ConfigError> {
    let Some(names) = raw else {
        return Ok([PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6].into());
    };
    let mut protocols = BTreeSet::new();
    for name in names {
        let number = match name.as_str() {
            "tcp" => PROTO_TCP,
            "udp" => PROTO_UDP,
            "icmp" => PROTO_ICMP,
            "icmpv6" => PROTO_ICMPV6,
            other => {
                return Err(context.error(format!(
                    "protocols: \"{other}\" is not one of tcp, udp, icmp, icmpv6"
                )));
            }
        };
        protocols.insert(number);
    }
    if protocols.is_empty() {
        return Err(context.error("protocols is empty: nothing would be replicated"));
    }
    Ok(protocols)
}

fn read_key(file: &PathBuf, context: &Context<'_>) -> Result<Passphrase, ConfigError> {
    let resolved = if file.is_relative() {
        context
            .path
            .parent()
            .map_or_else(|| file.clone(), |dir| dir.join(file))
    } else {
        file.clone()
    };
    let bytes = std::fs::read(&resolved)
        .map_err(|error| context.error(format!("key_file {}: {error}", resolved.display())))?;
    if bytes.len() < MIN_SYNC_KEY || bytes.len() > MAX_SYNC_KEY {
        return Err(context.error(format!(
            "key_file {} holds {} bytes, a sync key has {MIN_SYNC_KEY}..{MAX_SYNC_KEY}",
            resolved.display(),
            bytes.len()
        )));
    }
    if let Ok(metadata) = std::fs::metadata(&resolved) {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "sync: key_file {} is readable by group or others; chmod 600 it",
                resolved.display()
            );
        }
    }
    Ok(Passphrase::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const CARP: &str = "[[carp]]\nname = \"carp0\"\ncarpdev = \"eth0\"\nvhid = 1\npass = \"x\"\naddresses = [\"192.0.2.1/24\"]\n";

    fn with_key(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join("sync.key");
        std::fs::write(&path, bytes).expect("write the key");
        path
    }

    #[test]
    fn a_sync_table_with_defaults() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let key = with_key(&dir, &[7u8; 32]);
        let text = format!(
            "[sync]\nsyncdev = \"eth-sync\"\nkey_file = \"{}\"\n{CARP}",
            key.display()
        );
        let config = parse(&text, &dir.path().join("carpd.toml")).expect("valid");
        let sync = config.sync.expect("a sync table");
        assert_eq!(sync.syncdev, "eth-sync");
        assert_eq!(sync.peer, None);
        assert_eq!(sync.port, DEFAULT_SYNC_PORT);
        assert_eq!(sync.key.as_bytes(), &[7u8; 32]);
        assert_eq!(
            sync.protocols,
            [PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6].into()
        );
        assert_eq!(sync.bulk_timeout, Duration::from_secs(30));
        assert!(
            !format!("{sync:?}").contains("7, 7"),
            "the key is never printed"
        );
    }

    #[test]
    fn every_key_of_the_sync_table() {
        let dir = tempfile::tempdir().expect("a temp dir");
        with_key(&dir, b"0123456789abcdef");
        let text = format!(
            "[sync]\nsyncdev = \"eth-sync\"\nsyncpeer = \"10.0.3.3\"\nport = 7777\nkey_file = \"sync.key\"\n\
             protocols = [\"tcp\"]\nignore = [\"10.0.1.1\", \"10.0.3.0/24\"]\nbulk_timeout = 5\n{CARP}"
        );
        let sync = parse(&text, &dir.path().join("carpd.toml"))
            .expect("valid")
            .sync
            .expect("a sync table");
        assert_eq!(sync.peer, "10.0.3.3".parse().ok());
        assert_eq!(sync.port, 7777);
        assert_eq!(sync.protocols, [PROTO_TCP].into());
        assert_eq!(
            sync.ignore,
            vec![
                "10.0.1.1/32".parse::<IpNet>().expect("net"),
                "10.0.3.0/24".parse().expect("net")
            ]
        );
        assert_eq!(sync.bulk_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_sync_tables_say_why() {
        let dir = tempfile::tempdir().expect("a temp dir");
        with_key(&dir, b"0123456789abcdef");
        with_key(&dir, b"0123456789abcdef");
        std::fs::write(dir.path().join("short.key"), b"short").expect("write");
        let cases = [
            ("key_file = \"sync.key\"", "sync: syncdev is missing"),
            ("syncdev = \"eth-sync\"", "key_file is missing"),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"short.key\"",
                "holds 5 bytes",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"absent.key\"",
                "absent.key",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nsyncpeer = \"peer\"",
                "\"peer\" is not an IP address",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nprotocols = [\"sctp\"]",
                "\"sctp\" is not one of",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nprotocols = []",
                "protocols is empty",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nignore = [\"x\"]",
                "ignore \"x\"",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nport = 0",
                "port 0 out of range",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nbulk_timeout = 0",
                "bulk_timeout 0 out of range",
            ),
            (
                "syncdev = \"eth-sync\"\nkey_file = \"sync.key\"\nsyncdevv = \"x\"",
                "syncdevv",
            ),
        ];
        for (table, wanted) in cases {
            let text = format!("[sync]\n{table}\n{CARP}");
            let message = parse(&text, &dir.path().join("carpd.toml"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains(wanted),
                "{table:?}: {message:?} lacks {wanted:?}"
            );
        }
    }
}
