use std::io::Write as _;
use std::path::Path;

use super::{ConfigError, parse};

const PATH: &str = "/etc/carpd.toml";

fn config(text: &str) -> Result<super::Config, ConfigError> {
    parse(text, Path::new(PATH))
}

fn table(extra: &str) -> String {
    format!(
        "[[carp]]\nname = \"carp0\"\ncarpdev = \"eth0\"\nvhid = 1\npass = \"secret\"\naddresses = [\"192.0.2.1/24\"]\n{extra}"
    )
}

fn error_of(text: &str) -> String {
    match config(text) {
        Ok(parsed) => panic!("accepted: {parsed:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn full_example_with_defaults() {
    let text = r#"
preempt = true
metrics_listen = "127.0.0.1:9117"
[[carp]]
name = "carp0"
carpdev = "eth0"
vhid = 1
pass = "secret"
addresses = ["192.0.2.1/24", "2001:db8::1/64"]
groups = ["outside"]
peer = "192.0.2.3"
[[carp]]
name = "carp1"
carpdev = "eth1"
vhid = 2
pass = "other"
advbase = 0
advskew = 254
addresses = ["198.51.100.1/24"]
"#;
    let parsed = config(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(parsed.preempt);
    assert_eq!(parsed.control_socket, Path::new("/run/carpd.sock"));
    assert_eq!(
        parsed.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9117")
    );
    let carp0 = &parsed.carp[0];
    assert_eq!((carp0.vhid, carp0.advbase, carp0.advskew), (1, 1, 0));
    assert_eq!(carp0.groups, ["carp", "outside"]);
    assert_eq!(carp0.addresses.len(), 2);
    assert_eq!(carp0.pass.as_bytes(), b"secret");
    assert_eq!(
        carp0.peer.map(|p| p.to_string()).as_deref(),
        Some("192.0.2.3")
    );
    let carp1 = &parsed.carp[1];
    assert_eq!((carp1.advbase, carp1.advskew), (0, 254));
    assert_eq!(carp1.groups, ["carp"]);
    assert!(
        !format!("{parsed:?}").contains("secret"),
        "passphrase in Debug output"
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table row per config rule reads best as one table"
)]
fn every_rule_has_its_message() {
    let cases: &[(&str, String, &str)] = &[
        (
            "no tables",
            "preempt = true\n".into(),
            "/etc/carpd.toml: top level: no [[carp]] table: configure at least one carp interface",
        ),
        (
            "vhid range",
            table("").replace("vhid = 1", "vhid = 300"),
            "carp[0] (carp0): vhid 300 out of range 1..255",
        ),
        (
            "vhid zero",
            table("").replace("vhid = 1", "vhid = 0"),
            "vhid 0 out of range 1..255",
        ),
        (
            "advskew range",
            table("advskew = 255"),
            "carp[0] (carp0): advskew 255 out of range 0..254",
        ),
        (
            "advbase negative",
            table("advbase = -1"),
            "advbase -1 out of range 0..255",
        ),
        (
            "long pass",
            table("").replace("\"secret\"", "\"abcdefghijklmnopqrstuvw\""),
            "carp[0] (carp0): pass is 23 bytes, at most 19",
        ),
        (
            "no pass",
            table("").replace("pass = \"secret\"\n", ""),
            "pass (or pass_file) is missing",
        ),
        (
            "both pass",
            table("pass_file = \"x\""),
            "pass and pass_file are both set; use one",
        ),
        (
            "no name",
            table("").replace("name = \"carp0\"\n", ""),
            "carp[0] (): name is missing",
        ),
        (
            "bad name",
            table("").replace("\"carp0\"", "\"carp/0\""),
            "name \"carp/0\" is not a valid interface name",
        ),
        (
            "long carpdev",
            table("").replace("\"eth0\"", "\"a-very-long-ifname\""),
            "carpdev \"a-very-long-ifname\" is not a valid interface name",
        ),
        (
            "bad cidr",
            table("").replace("192.0.2.1/24", "192.0.2.1"),
            "address \"192.0.2.1\" is not in CIDR form",
        ),
        (
            "empty addresses",
            table("").replace("[\"192.0.2.1/24\"]", "[]"),
            "addresses is empty",
        ),
        (
            "duplicate address",
            table("").replace("[\"192.0.2.1/24\"]", "[\"192.0.2.1/24\", \"192.0.2.1/32\"]"),
            "address 192.0.2.1 is listed twice",
        ),
        (
            "multicast vip",
            table("").replace("192.0.2.1/24", "224.0.0.18/32"),
            "address 224.0.0.18/32 cannot be a virtual address",
        ),
        (
            "group digit",
            table("groups = [\"outside1\"]"),
            "group \"outside1\" is not a valid group name",
        ),
        (
            "group twice",
            table("groups = [\"carp\"]"),
            "group \"carp\" is listed twice (carp is implicit)",
        ),
        (
            "multicast peer",
            table("peer = \"224.0.0.18\""),
            "peer 224.0.0.18 must be a unicast address",
        ),
        (
            "peer family",
            table("peer = \"2001:db8::3\""),
            "peer 2001:db8::3: the carp interface has no address of that family",
        ),
        (
            "bad metrics",
            format!("metrics_listen = \"9117\"\n{}", table("")),
            "top level: metrics_listen \"9117\" is not an address:port",
        ),
        ("unknown key", table("advskw = 3"), "unknown field `advskw`"),
        ("syntax", "[[carp]\n".into(), "/etc/carpd.toml: "),
        (
            "duplicate name",
            format!(
                "{}{}",
                table(""),
                table("")
                    .replace("vhid = 1", "vhid = 2")
                    .replace("eth0", "eth1")
            ),
            "carp[1] (carp0): name carp0 is used twice",
        ),
        (
            "duplicate vhid",
            format!("{}{}", table(""), table("").replace("carp0", "carp1")),
            "carp[1] (carp1): vhid 1 on eth0 is already used by carp0",
        ),
        (
            "name is a carpdev",
            format!(
                "{}{}",
                table(""),
                table("")
                    .replace("carp0", "eth0")
                    .replace("\"eth0\"\nvhid", "\"eth1\"\nvhid")
            ),
            "name eth0 is also used as a carpdev",
        ),
    ];
    for (what, text, expected) in cases {
        let message = error_of(text);
        assert!(
            message.contains(expected),
            "{what}: got {message:?}, expected it to contain {expected:?}"
        );
        assert!(
            message.starts_with(PATH),
            "{what}: message does not name the file: {message}"
        );
        assert!(
            !message.contains("secret"),
            "{what}: passphrase leaked: {message}"
        );
    }
}

#[test]
fn pass_file_is_relative_to_the_config_and_loses_one_newline() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pass_path = dir.path().join("carp0.pass");
    let mut file = std::fs::File::create(&pass_path).unwrap_or_else(|e| panic!("{e}"));
    file.write_all(b"from-file\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let text = table("").replace("pass = \"secret\"", "pass_file = \"carp0.pass\"");
    let parsed = parse(&text, &dir.path().join("carpd.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.carp[0].pass.as_bytes(), b"from-file");
    let missing = parse(&text, Path::new("/nonexistent/carpd.toml"))
        .err()
        .map(|e| e.to_string());
    assert!(missing.is_some_and(|m| m.contains("pass_file /nonexistent/carp0.pass")));
}

#[test]
fn load_names_a_missing_file() {
    let message = super::load(Path::new("/nonexistent/carpd.toml"))
        .err()
        .map(|e| e.to_string());
    assert!(message.is_some_and(|m| m.starts_with("/nonexistent/carpd.toml: ")));
}
