//! A remote machine's shell over `ssh HOST sh`.

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use crate::process;
use crate::shell::{Output, Shell, ShellError};

/// Runs commands on a remote host through the `ssh` client: `ssh HOST sh`,
/// with the command on standard input so no second level of quoting is
/// needed. Authentication is ssh's business (agent, keys, config).
#[derive(Debug, Clone)]
pub struct SshShell {
    name: String,
    program: OsString,
    args: Vec<OsString>,
}

impl SshShell {
    /// A shell on `host` (anything `ssh` accepts: `user@host`, a config alias).
    pub fn new(host: &str) -> Self {
        Self::with_options(host, &[])
    }

    /// A shell on `host` with extra `ssh` arguments before the host (`-p
    /// 2222`, `-i KEY`, `-o Option=value`).
    pub fn with_options(host: &str, options: &[OsString]) -> Self {
        let mut args: Vec<OsString> = ["-o", "BatchMode=yes", "-T"]
            .iter()
            .map(OsString::from)
            .collect();
        args.extend(options.iter().cloned());
        args.extend(["--", host, "sh"].iter().map(OsString::from));
        SshShell {
            name: format!("ssh:{host}"),
            program: OsString::from("ssh"),
            args,
        }
    }

    /// Uses `program` with `args` instead of `ssh -o BatchMode=yes -T -- HOST
    /// sh`; the command still arrives on standard input. For tests and for
    /// wrappers such as `sshpass`.
    pub fn with_command(name: &str, program: OsString, args: Vec<OsString>) -> Self {
        SshShell {
            name: name.to_string(),
            program,
            args,
        }
    }
}

impl Shell for SshShell {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        let mut script = command.as_bytes().to_vec();
        script.push(b'\n');
        process::run(cmd, &script, timeout, command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_travels_on_stdin() {
        // `sh` standing in for `ssh HOST sh`: same transport, no network.
        let shell = SshShell::with_command("fake", "sh".into(), vec![]);
        let out = shell
            .run("echo \"$((6 * 7))\"; exit 4", Duration::from_secs(10))
            .unwrap();
        assert_eq!(out.stdout, b"42\n");
        assert_eq!(out.status, 4);
    }
}
