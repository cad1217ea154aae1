//! `carpd --config F --check`: exit 0 on a good config, and on a bad one a
//! non-zero exit with one message that names the file, the table or key, and
//! the reason. Runs the release binary as an operator would; needs no root
//! and no namespace.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use carp_tests::carpd_bin;

/// A valid `[[carp]]` table; cases break it one way each.
const TABLE: &str = r#"[[carp]]
name = "carp0"
carpdev = "eth0"
vhid = 1
pass = "s3cret-pass"
advbase = 1
advskew = 0
addresses = ["192.0.2.1/24", "2001:db8::1/64"]
"#;
const SECOND_TABLE: &str = r#"[[carp]]
name = "carp1"
carpdev = "eth0"
vhid = 2
pass = "s3cret-pass"
addresses = ["198.51.100.1/24"]
"#;
const PASS: &str = "s3cret-pass";

struct Checked {
    path: PathBuf,
    output: Output,
}

impl Checked {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// `carpd --config <path> --check`.
fn check(path: &Path) -> anyhow::Result<Checked> {
    let output = Command::new(carpd_bin()?)
        .arg("--config")
        .arg(path)
        .arg("--check")
        // The message must not depend on the log level the caller happens to set.
        .env_remove("CARPD_LOG")
        .output()?;
    Ok(Checked {
        path: path.to_owned(),
        output,
    })
}

/// Writes `text` as `carpd.toml` in `dir` and checks it.
fn check_text(dir: &Path, text: &str) -> anyhow::Result<Checked> {
    let path = dir.join("carpd.toml");
    fs::write(&path, text)?;
    check(&path)
}

/// `table` with `key = ...` lines replaced (`None` removes the key).
fn edit(table: &str, key: &str, value: Option<&str>) -> String {
    let prefix = format!("{key} = ");
    table
        .lines()
        .filter_map(|line| match (line.starts_with(&prefix), value) {
            (false, _) => Some(line.to_owned()),
            (true, Some(value)) => Some(format!("{key} = {value}")),
            (true, None) => None,
        })
        .map(|line| line + "\n")
        .collect()
}

/// A rejected config: non-zero exit, nothing claimed OK, and one message on
/// stderr containing the file and each of `expected`.
fn assert_rejected(checked: &Checked, what: &str, expected: &[&str]) {
    let stderr = checked.stderr();
    assert!(
        !checked.output.status.success(),
        "{what}: carpd --check accepted it; stdout: {}",
        checked.stdout()
    );
    assert!(
        !checked.stdout().contains("OK"),
        "{what}: stdout claims OK: {}",
        checked.stdout()
    );
    let path = checked.path.display().to_string();
    assert!(
        stderr.contains(&path),
        "{what}: message does not name the file {path}: {stderr:?}"
    );
    for part in expected {
        assert!(
            stderr.contains(part),
            "{what}: message does not contain {part:?}: {stderr:?}"
        );
    }
    assert!(
        !stderr.contains(PASS),
        "{what}: the passphrase leaked into the message: {stderr:?}"
    );
    assert!(
        stderr.lines().count() <= 2,
        "{what}: one clear message expected, got: {stderr:?}"
    );
}

#[test]
fn a_good_config_passes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let checked = check_text(
        dir.path(),
        &format!("preempt = true\n{TABLE}{SECOND_TABLE}"),
    )?;
    assert!(
        checked.output.status.success(),
        "rejected: {}",
        checked.stderr()
    );
    let stdout = checked.stdout();
    assert!(stdout.contains("OK"), "{stdout:?}");
    assert!(
        stdout.contains(&checked.path.display().to_string()),
        "{stdout:?}"
    );
    assert!(!stdout.contains(PASS), "passphrase printed: {stdout:?}");
    Ok(())
}

#[test]
fn a_good_config_with_a_pass_file_passes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pass_file = dir.path().join("carp0.pass");
    fs::write(&pass_file, format!("{PASS}\n"))?;
    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o600))?;
    // Relative to the config's directory.
    let text = edit(TABLE, "pass", None) + "pass_file = \"carp0.pass\"\n";
    let checked = check_text(dir.path(), &text)?;
    assert!(
        checked.output.status.success(),
        "rejected: {}",
        checked.stderr()
    );
    Ok(())
}

#[test]
fn each_bad_config_is_rejected_with_file_key_and_reason() -> anyhow::Result<()> {
    let long_pass = "\"twenty-three-bytes-long\"";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown key",
            format!("{TABLE}advskw = 3\n"),
            vec!["line 9", "advskw", "unknown field"],
        ),
        (
            "unknown top-level key",
            format!("preemt = true\n{TABLE}"),
            vec!["preemt", "unknown field"],
        ),
        (
            "missing vhid",
            edit(TABLE, "vhid", None),
            vec!["carp[0] (carp0)", "vhid is missing"],
        ),
        (
            "missing carpdev",
            edit(TABLE, "carpdev", None),
            vec!["carp[0] (carp0)", "carpdev is missing"],
        ),
        (
            "missing addresses",
            edit(TABLE, "addresses", None),
            vec!["carp[0] (carp0)", "addresses is missing"],
        ),
        (
            "pass longer than 19 bytes",
            edit(TABLE, "pass", Some(long_pass)),
            vec!["carp[0] (carp0)", "pass is 23 bytes, at most 19"],
        ),
        (
            "vhid 0",
            edit(TABLE, "vhid", Some("0")),
            vec!["carp[0] (carp0)", "vhid 0 out of range 1..255"],
        ),
        (
            "vhid 256",
            edit(TABLE, "vhid", Some("256")),
            vec!["carp[0] (carp0)", "vhid 256 out of range 1..255"],
        ),
        (
            "advskew 255",
            edit(TABLE, "advskew", Some("255")),
            vec!["carp[0] (carp0)", "advskew 255 out of range 0..254"],
        ),
        (
            "duplicate vhid on one carpdev",
            format!("{TABLE}{}", edit(SECOND_TABLE, "vhid", Some("1"))),
            vec!["carp[1] (carp1)", "vhid 1 on eth0 is already used by carp0"],
        ),
        (
            "address without a prefix",
            edit(TABLE, "addresses", Some("[\"192.0.2.1\"]")),
            vec!["carp[0] (carp0)", "\"192.0.2.1\"", "CIDR"],
        ),
        (
            "prefix out of range",
            edit(TABLE, "addresses", Some("[\"192.0.2.1/33\"]")),
            vec!["carp[0] (carp0)", "\"192.0.2.1/33\"", "CIDR"],
        ),
        (
            "not an address",
            edit(TABLE, "addresses", Some("[\"gateway/24\"]")),
            vec!["carp[0] (carp0)", "\"gateway/24\"", "CIDR"],
        ),
        (
            "pass and pass_file",
            format!("{TABLE}pass_file = \"carp0.pass\"\n"),
            vec!["carp[0] (carp0)", "pass and pass_file are both set"],
        ),
        (
            "missing pass_file",
            edit(TABLE, "pass", None) + "pass_file = \"absent.pass\"\n",
            vec![
                "carp[0] (carp0)",
                "pass_file",
                "absent.pass",
                "No such file",
            ],
        ),
        (
            "unparsable TOML",
            format!("{TABLE}[[carp]\nname = \"carp1\"\n"),
            vec!["TOML parse error", "line 9"],
        ),
        (
            "a string where a number belongs",
            edit(TABLE, "vhid", Some("\"one\"")),
            vec!["vhid", "invalid type"],
        ),
    ];
    for (what, text, expected) in &cases {
        let dir = tempfile::tempdir()?;
        let checked = check_text(dir.path(), text)?;
        assert_rejected(&checked, what, expected);
    }
    Ok(())
}

#[test]
fn a_nonexistent_config_file_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let checked = check(&dir.path().join("nowhere.toml"))?;
    assert_rejected(&checked, "nonexistent file", &["No such file"]);
    Ok(())
}
