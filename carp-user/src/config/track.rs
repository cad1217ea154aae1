//! The `[hooks]` table and the `[[track]]` tables.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawHooks, RawTrack};
use super::validate::{Context, check_ifname, number};
use super::{CarpConfig, ConfigError, HooksConfig, TrackConfig, TrackKind};
use crate::groups::CARP_GROUP;

const DEFAULT_HOOK_TIMEOUT_MS: i64 = 10_000;
const MAX_HOOK_TIMEOUT_MS: u64 = 600_000;
const DEFAULT_INTERVAL_MS: i64 = 1000;
const MIN_INTERVAL_MS: u64 = 10;
const MAX_INTERVAL_MS: u64 = 3_600_000;
const DEFAULT_RISE_FALL: i64 = 3;
const MAX_RISE_FALL: u64 = 100;
/// `carpdemote` takes 0..128 in OpenBSD; a tracker demotes by at least 1.
const MAX_DEMOTE: u64 = 128;
const MAX_TRACK_NAME: usize = 32;

pub fn hooks(raw: Option<RawHooks>, path: &Path) -> Result<HooksConfig, ConfigError> {
    let context = Context {
        path,
        location: "hooks".into(),
    };
    let raw = raw.unwrap_or(RawHooks {
        transition: None,
        demote: None,
        conflict: None,
        timeout_ms: None,
    });
    for (key, command) in [
        ("transition", &raw.transition),
        ("demote", &raw.demote),
        ("conflict", &raw.conflict),
    ] {
        if command.as_ref().is_some_and(|c| c.trim().is_empty()) {
            return Err(context.error(format!("{key} is an empty command")));
        }
    }
    let timeout_ms = number(
        raw.timeout_ms.unwrap_or(DEFAULT_HOOK_TIMEOUT_MS),
        1,
        MAX_HOOK_TIMEOUT_MS,
        "timeout_ms",
        &context,
    )?;
    Ok(HooksConfig {
        transition: raw.transition,
        demote: raw.demote,
        conflict: raw.conflict,
        timeout: Duration::from_millis(timeout_ms),
    })
}

pub fn trackers(
    raw: Vec<RawTrack>,
    carp: &[CarpConfig],
    path: &Path,
) -> Result<Vec<TrackConfig>, ConfigError> {
    let groups: BTreeSet<&str> = carp
        .iter()
        .flat_map(|c| c.groups.iter().map(String::as_str))
        .chain([CARP_GROUP])
        .collect();
    let mut names = BTreeSet::new();
    let mut trackers = Vec::with_capacity(raw.len());
    for (index, table) in raw.into_iter().enumerate() {
        let context = Context {
            path,
            location: format!(
                "track[{index}] ({})",
                table.name.clone().unwrap_or_default()
            ),
        };
        let tracker = tracker(table, &groups, &context)?;
        if !names.insert(tracker.name.clone()) {
            return Err(context.error(format!("name {} is used twice", tracker.name)));
        }
        trackers.push(tracker);
    }
    Ok(trackers)
}

fn tracker(
    table: RawTrack,
    groups: &BTreeSet<&str>,
    context: &Context<'_>,
) -> Result<TrackConfig, ConfigError> {
    let name = table
        .name
        .clone()
        .ok_or_else(|| context.error("name is missing"))?;
    let valid_name = !name.is_empty()
        && name.len() <= MAX_TRACK_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(context.error(format!(
            "name \"{name}\" is not valid (1..{MAX_TRACK_NAME} letters, digits, '-' or '_')"
        )));
    }
    let kind = kind(&table, context)?;
    let interval_ms = number(
        table.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS),
        MIN_INTERVAL_MS,
        MAX_INTERVAL_MS,
        "interval_ms",
        context,
    )?;
    // A check never overlaps the next one.
    let timeout_ms = number(
        table
            .timeout_ms
            .unwrap_or(i64::try_from(interval_ms).unwrap_or(i64::MAX)),
        1,
        interval_ms,
        "timeout_ms",
        context,
    )?;
    let rise = number(
        table.rise.unwrap_or(DEFAULT_RISE_FALL),
        1,
        MAX_RISE_FALL,
        "rise",
        context,
    )?;
    let fall = number(
        table.fall.unwrap_or(DEFAULT_RISE_FALL),
        1,
        MAX_RISE_FALL,
        "fall",
        context,
    )?;
    let demote = number(table.demote.unwrap_or(1), 1, MAX_DEMOTE, "demote", context)?;
    let group = table.group.unwrap_or_else(|| CARP_GROUP.to_owned());
    if !groups.contains(group.as_str()) {
        return Err(context.error(format!(
            "group \"{group}\" is not a group of any [[carp]] table (known: {})",
            groups.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(TrackConfig {
        name,
        kind,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        // Bounded by MAX_RISE_FALL and MAX_DEMOTE above.
        rise: u32::try_from(rise).unwrap_or(u32::MAX),
        fall: u32::try_from(fall).unwrap_or(u32::MAX),
        group,
        demote: u32::try_from(demote).unwrap_or(u32::MAX),
    })
}

/// The kind and its own keys; a key another kind uses is an error here, so
/// a typo'd kind never silently ignores what the operator wrote.
fn kind(table: &RawTrack, context: &Context<'_>) -> Result<TrackKind, ConfigError> {
    let kind = table
        .kind
        .as_deref()
        .ok_or_else(|| context.error("kind is missing (link, ping, coherence or exec)"))?;
    let (allowed, parsed): (&[&str], TrackKind) = match kind {
        "link" => {
            let interface = required(table.interface.as_ref(), "interface", kind, context)?;
            check_ifname(&interface, "interface", context)?;
            (&["interface"], TrackKind::Link { interface })
        }
        "ping" => {
            let target = required(table.target.as_ref(), "target", kind, context)?;
            let target: IpAddr = target
                .parse()
                .map_err(|_| context.error(format!("target \"{target}\" is not an IP address")))?;
            if target.is_multicast() || target.is_unspecified() {
                return Err(context.error(format!("target {target} must be a unicast address")));
            }
            if let Some(interface) = &table.interface {
                check_ifname(interface, "interface", context)?;
            }
            (
                &["interface", "target"],
                TrackKind::Ping {
                    target,
                    interface: table.interface.clone(),
                },
            )
        }
        "coherence" => (&[], TrackKind::Coherence),
        "exec" => {
            let command = required(table.command.as_ref(), "command", kind, context)?;
            if command.trim().is_empty() {
                return Err(context.error("command is empty"));
            }
            (&["command"], TrackKind::Exec { command })
        }
        other => {
            return Err(context.error(format!(
                "kind \"{other}\" is not one of link, ping, coherence, exec"
            )));
        }
    };
    for (key, set) in [
        ("interface", table.interface.is_some()),
        ("target", table.target.is_some()),
        ("command", table.command.is_some()),
    ] {
        if set && !allowed.contains(&key) {
            return Err(context.error(format!("{key} is not used by kind {kind}")));
        }
    }
    Ok(parsed)
}

fn required(
    value: Option<&String>,
    key: &str,
    kind: &str,
    context: &Context<'_>,
) -> Result<String, ConfigError> {
    value
        .cloned()
        .ok_or_else(|| context.error(format!("{key} is missing (kind {kind} needs it)")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{TrackKind, parse};

    const CARP: &str = "[[carp]]\nname = \"carp0\"\ncarpdev = \"eth0\"\nvhid = 1\npass = \"s\"\naddresses = [\"192.0.2.1/24\"]\ngroups = [\"outside\"]\n";

    fn error_of(extra: &str) -> String {
        match parse(&format!("{CARP}{extra}"), Path::new("/etc/carpd.toml")) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn trackers_hooks_and_boot_timeout_with_defaults() {
        let text = format!(
            "boot_timeout = 30\n[hooks]\ntransition = \"/usr/local/bin/on-carp\"\n{CARP}\
             [[track]]\nname = \"uplink\"\nkind = \"ping\"\ntarget = \"192.0.2.254\"\ninterface = \"eth0\"\ngroup = \"outside\"\ndemote = 50\n\
             [[track]]\nname = \"eth0-link\"\nkind = \"link\"\ninterface = \"eth0\"\ninterval_ms = 200\n\
             [[track]]\nname = \"same-role\"\nkind = \"coherence\"\n\
             [[track]]\nname = \"script\"\nkind = \"exec\"\ncommand = \"true\"\ntimeout_ms = 300\nrise = 1\nfall = 2\n"
        );
        let config = parse(&text, Path::new("/etc/carpd.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.boot_timeout, Duration::from_secs(30));
        assert_eq!(
            config.hooks.transition.as_deref(),
            Some("/usr/local/bin/on-carp")
        );
        assert_eq!(config.hooks.demote, None);
        assert_eq!(config.hooks.timeout, Duration::from_secs(10));
        let [ping, link, coherence, exec] = config.track.as_slice() else {
            panic!("four trackers: {:?}", config.track);
        };
        assert_eq!(ping.kind.name(), "ping");
        assert_eq!((ping.group.as_str(), ping.demote), ("outside", 50));
        assert_eq!((ping.rise, ping.fall), (3, 3));
        assert_eq!(ping.interval, Duration::from_secs(1));
        assert_eq!(ping.timeout, Duration::from_secs(1));
        assert_eq!(
            link.kind,
            TrackKind::Link {
                interface: "eth0".into()
            }
        );
        assert_eq!(
            (link.interval, link.timeout),
            (Duration::from_millis(200), Duration::from_millis(200))
        );
        assert_eq!((coherence.group.as_str(), coherence.demote), ("carp", 1));
        assert_eq!(
            (exec.rise, exec.fall, exec.timeout),
            (1, 2, Duration::from_millis(300))
        );
        assert!(!config.carp[0].freebsd_compat);
    }

    #[test]
    fn defaults_without_any_of_it() {
        let config = parse(CARP, Path::new("/etc/carpd.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.boot_timeout, Duration::from_mins(1));
        assert!(config.track.is_empty());
        assert_eq!(config.hooks.transition, None);
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one table row per rule reads best as one table"
    )]
    fn every_rule_names_the_table_and_the_key() {
        let track = |body: &str| format!("[[track]]\nname = \"t\"\n{body}");
        let cases = [
            (
                track("kind = \"ping\"\n"),
                "track[0] (t): target is missing (kind ping needs it)",
            ),
            (
                track("kind = \"link\"\n"),
                "track[0] (t): interface is missing (kind link needs it)",
            ),
            (
                track("kind = \"exec\"\n"),
                "track[0] (t): command is missing (kind exec needs it)",
            ),
            (
                track(""),
                "track[0] (t): kind is missing (link, ping, coherence or exec)",
            ),
            (
                track("kind = \"dns\"\n"),
                "track[0] (t): kind \"dns\" is not one of link, ping, coherence, exec",
            ),
            (
                track("kind = \"link\"\ninterface = \"eth0\"\ntarget = \"1.2.3.4\"\n"),
                "track[0] (t): target is not used by kind link",
            ),
            (
                track("kind = \"coherence\"\ncommand = \"x\"\n"),
                "track[0] (t): command is not used by kind coherence",
            ),
            (
                track("kind = \"ping\"\ntarget = \"gateway\"\n"),
                "track[0] (t): target \"gateway\" is not an IP address",
            ),
            (
                track("kind = \"ping\"\ntarget = \"224.0.0.1\"\n"),
                "track[0] (t): target 224.0.0.1 must be a unicast address",
            ),
            (
                track("kind = \"coherence\"\ngroup = \"inside\"\n"),
                "track[0] (t): group \"inside\" is not a group of any [[carp]] table (known: carp, outside)",
            ),
            (
                track("kind = \"coherence\"\ninterval_ms = 5\n"),
                "track[0] (t): interval_ms 5 out of range 10..3600000",
            ),
            (
                track("kind = \"coherence\"\ninterval_ms = 100\ntimeout_ms = 101\n"),
                "track[0] (t): timeout_ms 101 out of range 1..100",
            ),
            (
                track("kind = \"coherence\"\nrise = 0\n"),
                "track[0] (t): rise 0 out of range 1..100",
            ),
            (
                track("kind = \"coherence\"\nfall = 101\n"),
                "track[0] (t): fall 101 out of range 1..100",
            ),
            (
                track("kind = \"coherence\"\ndemote = 129\n"),
                "track[0] (t): demote 129 out of range 1..128",
            ),
            (
                track("kind = \"coherence\"\ndemote = 0\n"),
                "track[0] (t): demote 0 out of range 1..128",
            ),
            (
                track("kind = \"coherence\"\nintervall_ms = 100\n"),
                "unknown field `intervall_ms`",
            ),
            (
                format!(
                    "{}{}",
                    track("kind = \"coherence\"\n"),
                    track("kind = \"coherence\"\n")
                ),
                "track[1] (t): name t is used twice",
            ),
            (
                "[[track]]\nname = \"a b\"\nkind = \"coherence\"\n".to_owned(),
                "track[0] (a b): name \"a b\" is not valid",
            ),
            (
                "[hooks]\ntransition = \" \"\n".to_owned(),
                "hooks: transition is an empty command",
            ),
            (
                "[hooks]\ntimeout_ms = 0\n".to_owned(),
                "hooks: timeout_ms 0 out of range 1..600000",
            ),
        ];
        for (extra, expected) in cases {
            let message = error_of(&extra);
            assert!(message.starts_with("/etc/carpd.toml: "), "{message}");
            assert!(
                message.contains(expected),
                "{extra}\nexpected: {expected}\ngot: {message}"
            );
        }
        let message = match parse(&format!("boot_timeout = 0\n{CARP}"), Path::new("/x.toml")) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        };
        assert_eq!(
            message,
            "/x.toml: top level: boot_timeout 0 out of range 1..3600"
        );
    }
}
