//! `covnet shell` as a real terminal: a pty session on a machine of a
//! running `covnet vms`, driven from a pty of the test like a user at a
//! terminal (full-screen `vi`, window resizes, Ctrl-C, exit status), on a
//! namespace machine and on a VM.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use covnet_runner::image::kernel::Kernel;
use covnet_tests::lcov_tool::covnet_bin;
use covnet_tests::pty::PtyChild;
use covnet_tests::running::{wait_until, CovnetRun};

/// Bound of each wait for the guest (TCG guests on a loaded host).
const T: Duration = Duration::from_secs(60);

fn require_tools(vm: bool) {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "busybox-static is required (bash scripts/setup.sh)"
    );
    if vm {
        let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
        assert!(
            qemu.as_ref().is_ok_and(|o| o.status.success()),
            "qemu-system-x86_64 is required for VM tests (bash scripts/setup.sh): {qemu:?}"
        );
        if let Err(e) = Kernel::host_default() {
            panic!("a Debian kernel in /boot is required for VM tests: {e}");
        }
    } else {
        let nsenter = Command::new("nsenter").arg("--version").output();
        assert!(
            nsenter.as_ref().is_ok_and(|o| o.status.success()),
            "nsenter (util-linux) is required for namespace terminals: {nsenter:?}"
        );
    }
}

/// Starts `covnet vms` on a one-machine spec, drives a `covnet shell m`
/// session on a pty, and checks that `covnet vms` outlives the session.
fn terminal_session(defaults: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("vms.toml");
    std::fs::write(&spec, format!("{defaults}[machines.m]\n")).expect("write spec");
    let base = dir.path().join("runs");
    std::fs::create_dir(&base).expect("run base");
    let mut vms = CovnetRun::spawn(
        &["vms", spec.to_str().expect("utf-8"), "--no-console"],
        dir.path(),
        &base,
    )
    .expect("covnet vms");
    let run_dir = vms.run_dir(T).expect("run directory");
    let socket = run_dir.join("m.shell");
    wait_until("the shell socket of m", Duration::from_secs(180), || {
        socket.exists()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", vms.stderr()));
    let run = run_dir.to_str().expect("utf-8").to_owned();

    let bin = covnet_bin().expect("covnet binary");
    let mut cmd = Command::new(&bin);
    cmd.args(["shell", "m", "--run", &run])
        .env("TERM", "xterm")
        .current_dir(dir.path());
    let mut term = PtyChild::spawn(cmd, 30, 100).expect("covnet shell on a pty");
    let fail =
        |e: anyhow::Error, vms: &CovnetRun| -> ! { panic!("{e:#}\ncovnet vms:\n{}", vms.stderr()) };
    let prompt = b"root@m:~# ";
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));

    // The pty has the host's window size, and follows it.
    term.send(b"stty size\r").expect("send");
    term.wait_for(b"\r\n30 100\r\n", T)
        .unwrap_or_else(|e| fail(e, &vms));
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));
    term.resize(40, 120).expect("resize");
    term.send(b"stty size; echo TERM=$TERM\r").expect("send");
    term.wait_for(b"\r\n40 120\r\nTERM=xterm\r\n", T)
        .unwrap_or_else(|e| fail(e, &vms));
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));

    // Ctrl-C goes to the guest's foreground job, not to covnet.
    term.send(b"echo started-$((6*7)); sleep 100; echo not-interrupted\r")
        .expect("send");
    term.wait_for(b"started-42\r\n", T)
        .unwrap_or_else(|e| fail(e, &vms));
    term.send(b"\x03").expect("send ^C");
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));
    term.send(b"pidof sleep || echo no-sleep-$((2+2))\r")
        .expect("send");
    let out = term
        .wait_for(b"no-sleep-4\r\n", T)
        .unwrap_or_else(|e| fail(e, &vms));
    assert!(
        !String::from_utf8_lossy(&out).contains("not-interrupted"),
        "{out:?}"
    );
    assert!(
        term.try_wait().expect("try_wait").is_none(),
        "covnet shell ended on ^C"
    );

    // A full-screen program: vi draws its screen (alternate screen,
    // cursor addressing, the file name in the status line on the last of
    // the 40 rows) and edits a file.
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));
    term.send(b"vi /tmp/pty-test.txt\r").expect("send");
    term.wait_for(b"\x1b[40;1H", T)
        .unwrap_or_else(|e| fail(e, &vms));
    term.wait_for(b"/tmp/pty-test.txt", T)
        .unwrap_or_else(|e| fail(e, &vms));
    term.send(b"ihello pty").expect("send");
    term.wait_for(b"hello pty", T)
        .unwrap_or_else(|e| fail(e, &vms));
    // ESC alone, then the command: ESC and ':' together read as Alt-':'.
    term.send(b"\x1b").expect("send");
    term.wait_for(b"- /tmp/pty-test.txt [Modified]", T)
        .unwrap_or_else(|e| fail(e, &vms));
    term.send(b":wq\r").expect("send");
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));
    term.send(b"echo got-$(tr a-z A-Z </tmp/pty-test.txt)\r")
        .expect("send");
    term.wait_for(b"got-HELLO PTY\r\n", T)
        .unwrap_or_else(|e| fail(e, &vms));

    // The shell's exit ends the session with its status; covnet vms runs on.
    term.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));
    term.send(b"exit 7\r").expect("send");
    let status = term.wait(T).unwrap_or_else(|e| fail(e, &vms));
    assert_eq!(
        status.code(),
        Some(7),
        "{:?}",
        String::from_utf8_lossy(&term.output())
    );
    assert!(
        vms.try_wait().expect("try_wait").is_none(),
        "covnet vms ended"
    );

    // Without a terminal: the line mode, and -c, still work; and a second
    // terminal session can start after the first.
    let out = Command::new(&bin)
        .args(["shell", "m", "--run", &run])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"echo piped-$((3+3))\n")?;
            c.wait_with_output()
        })
        .expect("covnet shell with piped stdin");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped-6\n");
    let mut cmd = Command::new(&bin);
    cmd.args(["shell", "m", "--run", &run]).env("TERM", "xterm");
    let mut again = PtyChild::spawn(cmd, 24, 80).expect("second session");
    again.wait_for(prompt, T).unwrap_or_else(|e| fail(e, &vms));
    again.send(b"exit\r").expect("send");
    assert_eq!(again.wait(T).expect("second session ends").code(), Some(0));

    vms.signal(libc::SIGINT).expect("SIGINT");
    let status = vms
        .wait(Duration::from_secs(120))
        .expect("covnet vms exits");
    assert!(status.success(), "{status:?}\n{}", vms.stderr());
}

#[test]
fn namespace_shell_is_a_real_terminal() {
    require_tools(false);
    terminal_session("[defaults]\nbackend = \"namespace\"\n");
}

#[test]
fn vm_shell_is_a_real_terminal() {
    require_tools(true);
    terminal_session("");
}
