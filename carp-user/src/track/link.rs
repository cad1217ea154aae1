//! The link tracker: is there carrier on an interface? Read from sysfs, which
//! is what the kernel reports without any netlink round trip.

use std::io;
use std::path::PathBuf;

use super::Outcome;

/// Up when the carrier is present and the operational state lets traffic
/// through. RFC 2863 "unknown" is what drivers without link detection (lo,
/// some virtual devices) report while passing traffic, so it counts as up.
pub async fn check(interface: &str) -> Outcome {
    let directory = PathBuf::from("/sys/class/net").join(interface);
    let carrier = match tokio::fs::read_to_string(directory.join("carrier")).await {
        Ok(carrier) => carrier,
        Err(error) => return Outcome::bad(unreadable(interface, &error)),
    };
    if carrier.trim() != "1" {
        return Outcome::bad(format!("{interface}: no carrier"));
    }
    let operstate = match tokio::fs::read_to_string(directory.join("operstate")).await {
        Ok(operstate) => operstate,
        Err(error) => return Outcome::bad(unreadable(interface, &error)),
    };
    match operstate.trim() {
        state @ ("up" | "unknown") => Outcome::good(format!("{interface}: carrier, {state}")),
        state => Outcome::bad(format!("{interface}: carrier, but {state}")),
    }
}

fn unreadable(interface: &str, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => format!("{interface}: no such interface"),
        // sysfs answers EINVAL for the carrier of an interface that is
        // administratively down.
        io::ErrorKind::InvalidInput => format!("{interface}: down"),
        _ => format!("{interface}: link state unreadable: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_is_up() {
        let outcome = check("lo").await;
        assert!(outcome.ok, "{}", outcome.detail);
        assert!(
            outcome.detail.starts_with("lo: carrier"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn a_missing_interface_is_down() {
        let outcome = check("carpnosuch0").await;
        assert!(!outcome.ok);
        assert_eq!(outcome.detail, "carpnosuch0: no such interface");
    }

    #[test]
    fn explains_why_it_is_down() {
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        assert_eq!(unreadable("eth1", &einval), "eth1: down");
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        assert!(unreadable("eth1", &eacces).starts_with("eth1: link state unreadable: "));
    }
}
