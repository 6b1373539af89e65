//! `covnet collect --ssh` against a real ssh server: a private `sshd` on
//! loopback (its own host key, config and authorized key, nothing of the
//! machine's own ssh setup touched), serving the machine the coverage is
//! pulled from.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool::{self, Tracefile};

/// A private sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn sshd(dir: &Path, user_key_pub: &Path) -> Result<Sshd> {
    let host_key = dir.join("host_ed25519");
    lcov_tool::run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key),
    )
    .context("ssh-keygen is installed by scripts/setup.sh (openssh-client)")?;
    let port = free_port()?;
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nPidFile none\n",
            host_key.display(),
            user_key_pub.display()
        ),
    )?;
    // sshd insists on an absolute path and on its privilege-separation dir.
    std::fs::create_dir_all("/run/sshd")?;
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("/usr/sbin/sshd is installed by scripts/setup.sh (openssh-server)")?;
    let sshd = Sshd { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            Instant::now() < deadline,
            "sshd did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(sshd)
}

#[test]
fn collect_over_ssh_pulls_what_gcov_sees() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let key = dir.join("user_ed25519");
    lcov_tool::run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    )?;
    let server = sshd(dir, &key.with_extension("pub"))?;

    // The "remote" machine's build: objects, notes and, after a run, data.
    let build = dir.join("build");
    std::fs::create_dir_all(&build)?;
    std::fs::write(
        build.join("prog.c"),
        "int twice(int x) { return 2 * x; }\nint main(int argc, char **argv) {\n  (void)argv;\n  int s = 0;\n  for (int i = 0; i < argc * 3; i++)\n    s += twice(i);\n  return s > 100;\n}\n",
    )?;
    lcov_tool::run_ok(
        Command::new("gcc")
            .args(["--coverage", "-O0", "-o", "prog", "prog.c"])
            .current_dir(&build),
    )?;
    for args in [&["a"][..], &["a", "b", "c"][..]] {
        let st = Command::new(build.join("prog"))
            .args(args)
            .current_dir(&build)
            .status()?;
        ensure!(st.code().is_some(), "prog ran");
    }

    let capture = dir.join("capture");
    let port = server.port.to_string();
    let key_arg = format!("-i{}", key.display());
    let o = lcov_tool::covnet(
        &[
            "collect",
            "--ssh",
            "root@127.0.0.1",
            "--ssh-arg=-p",
            &format!("--ssh-arg={port}"),
            &format!("--ssh-arg={key_arg}"),
            "--ssh-arg=-oStrictHostKeyChecking=no",
            "--ssh-arg=-oUserKnownHostsFile=/dev/null",
            "--ssh-arg=-oLogLevel=ERROR",
            "--build",
            build.to_str().context("utf-8 path")?,
            "-o",
            capture.to_str().context("utf-8 path")?,
        ],
        dir,
    )?;
    ensure!(o.status.success(), "covnet collect --ssh failed:\n{o}");
    ensure!(o.stderr.contains("pulled 1 .gcda files"), "{o}");
    // gcc names the data file after its dump base (`prog.gcda` here).
    let local: Vec<_> = std::fs::read_dir(&build)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gcda"))
        .collect();
    ensure!(local.len() == 1, "one .gcda on the machine: {local:?}");
    let local = &local[0];
    let pulled = capture
        .join(build.strip_prefix("/")?)
        .join(local.file_name().context("file name")?);
    ensure!(
        std::fs::read(&pulled).with_context(|| format!("{} missing\n{o}", pulled.display()))?
            == std::fs::read(local)?,
        "the pulled .gcda must equal the machine's"
    );

    // And the capture merges to the runs' counts: `main` ran twice, `twice`
    // 3 * argc times each run (argc = 2, then 4).
    let info = dir.join("ssh.info");
    let o = lcov_tool::covnet(
        &[
            "merge",
            "--build",
            build.to_str().context("utf-8 path")?,
            capture.to_str().context("utf-8 path")?,
            "-o",
            info.to_str().context("utf-8 path")?,
        ],
        dir,
    )?;
    ensure!(o.status.success(), "covnet merge failed:\n{o}");
    let t = Tracefile::read(&info)?;
    let calls = |name: &str| {
        t.functions
            .iter()
            .find(|((_, n), _)| n == name)
            .map(|(_, (_, c))| *c)
    };
    ensure!(calls("main") == Some(2), "{:?}", t.functions);
    ensure!(calls("twice") == Some(18), "{:?}", t.functions);
    Ok(())
}
