//! The local machine's shell.

use std::process::Command;
use std::time::Duration;

use crate::process;
use crate::shell::{Output, Shell, ShellError};

/// Runs commands with the local `/bin/sh`, each in its own process group.
#[derive(Debug, Clone)]
pub struct LocalShell {
    name: String,
}

impl LocalShell {
    /// A shell on this host, named `localhost` in messages.
    pub fn new() -> Self {
        LocalShell {
            name: "localhost".to_string(),
        }
    }
}

impl Default for LocalShell {
    fn default() -> Self {
        Self::new()
    }
}

impl Shell for LocalShell {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        process::run(cmd, b"", timeout, command)
    }
}
