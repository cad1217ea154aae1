//! Running a command to completion, with an error that carries its stderr.

use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The command line as a shell user would type it, for error messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` with no stdin and returns its stdout; a non-zero exit is an
/// error naming the command and quoting what it printed.
pub fn output(command: &mut Command) -> Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: describe(command),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    Err(Error::Command {
        command: describe(command),
        status: out.status,
        output: said.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_joins_program_and_arguments() {
        let mut command = Command::new("ip");
        command.args(["-n", "ns1", "link"]);
        assert_eq!(describe(&command), "ip -n ns1 link");
    }

    #[test]
    fn output_returns_stdout_on_success() -> anyhow::Result<()> {
        let out = output(Command::new("sh").args(["-c", "echo hello"]))?;
        assert_eq!(out, "hello\n");
        Ok(())
    }

    #[test]
    fn failure_quotes_stderr_and_names_the_command() {
        let error = output(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]))
            .expect_err("exit 3 must be an error");
        let message = error.to_string();
        assert!(message.contains("sh -c"), "{message}");
        assert!(message.contains("oops"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
    }

    #[test]
    fn failure_without_stderr_quotes_stdout() {
        let error = output(Command::new("sh").args(["-c", "echo 100% packet loss; exit 1"]))
            .expect_err("exit 1 must be an error");
        assert!(error.to_string().contains("100% packet loss"), "{error}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let error = output(&mut Command::new("/nonexistent/carp-tool"))
            .expect_err("a missing program cannot run");
        assert!(matches!(error, Error::Spawn { .. }), "{error:?}");
    }
}
