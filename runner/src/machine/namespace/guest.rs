//! What a namespace machine's root contains besides host binaries: the
//! VM's own init and control shell, a small PID-1 wrapper, and the
//! machine's configuration files in the same form as the VM image
//! (`/covnet/machine.env`, `/covnet/services/NN-<name>.sh`, `/etc/hosts`,
//! ...), plus the machine's files from the spec.

pub use crate::image::guest_files::ReadError;
use crate::image::guest_files::{self, CONTROL_SH};
use crate::spec::{Machine, Spec};

/// PID 1 of a namespace machine: runs the VM's `/init` unchanged except
/// for what only a kernel of its own can do. covnet has already mounted the
/// root (a private tmpfs, so `/run` and `/tmp` need none of their own),
/// `/proc`, `/sys` and `/dev`; there are no modules to load
/// (`machine.env` lists none); and the host's devices (`devtmpfs`) must
/// never be mounted into a machine.
pub const NS_INIT_SH: &str = r#"#!/bin/sh
# covnet namespace machine: PID 1 of the machine's PID namespace.
export COVNET_NAMESPACE=1
# The control channel is a pty covnet bound at /dev/hvc0 (raw mode set on
# the host side), not a virtio port.
export COVNET_CONTROL_DEV=/dev/hvc0
mount() {
	case " $* " in
	*" devtmpfs "* | *" proc "* | *" sysfs "* | *" /run "* | *" /tmp "*) return 0 ;;
	esac
	/bin/busybox mount "$@"
}
. /init
"#;

/// Guest path of [`NS_INIT_SH`].
pub const NS_INIT_PATH: &str = "/covnet/ns-init.sh";

/// A file to create in the guest: path, contents, mode.
pub type GuestFileData = (String, Vec<u8>, u32);

/// Every generated and spec file of `machine`, in creation order (the
/// machine's own files last, so they may replace covnet's `/etc` files).
/// `env` is exported to init, services and the control shell.
pub fn files(
    spec: &Spec,
    machine: &Machine,
    env: &[(String, String)],
) -> Result<Vec<GuestFileData>, ReadError> {
    let generated = guest_files::generate(spec, machine, CONTROL_SH.as_bytes());
    let mut out: Vec<GuestFileData> = vec![
        (NS_INIT_PATH.into(), NS_INIT_SH.as_bytes().to_vec(), 0o755),
        (
            "/covnet/machine.env".into(),
            machine_env(machine, &generated.service_ids, env).into_bytes(),
            0o644,
        ),
    ];
    for file in &generated.files {
        let data = file.read()?;
        out.retain(|(t, _, _)| *t != file.path);
        out.push((file.path.clone(), data, file.mode));
    }
    Ok(out)
}

/// `/covnet/machine.env` as the VM image writes it, without modules or a
/// forward NIC (namespace machines have neither) and with both `/run` and
/// `/tmp` left to init.
pub fn machine_env(machine: &Machine, services: &[String], env: &[(String, String)]) -> String {
    guest_files::machine_env(machine, &[], services, None, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::from_str(
            r#"
[machines.server]
vlans = [1, 2]
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80"
env = { A = "it's" }
[[machines.server.files]]
target = "/etc/hosts"
content = "mine\n"
[machines.client]
"#,
            std::path::Path::new("/nonexistent/net.toml"),
        )
        .unwrap()
    }

    #[test]
    fn env_has_nics_services_and_no_modules() {
        let spec = spec();
        let env = machine_env(
            &spec.machines[0],
            &["01-httpd".into()],
            &[("GCOV_PREFIX".into(), "/covnet/gcov".into())],
        );
        assert!(env.contains("COVNET_NAME='server'\n"), "{env}");
        assert!(env.contains("COVNET_NICS='2'\n"));
        assert!(env.contains("COVNET_NIC1_ADDR='192.168.2.1'\n"));
        assert!(env.contains("COVNET_NIC0_MAC='52:54:00:01:01:00'\n"));
        assert!(env.contains("COVNET_MODULES=''\n"));
        assert!(env.contains("COVNET_SERVICES='01-httpd'\n"));
        assert!(env.contains("export GCOV_PREFIX='/covnet/gcov'\n"));
    }

    #[test]
    fn files_include_init_services_and_spec_files_last() {
        let spec = spec();
        let files = files(&spec, &spec.machines[0], &[]).unwrap();
        let get = |p: &str| {
            files
                .iter()
                .find(|(t, _, _)| t == p)
                .map(|(_, d, m)| (d, *m))
        };
        assert_eq!(get("/init").unwrap().1, 0o755);
        assert_eq!(get(NS_INIT_PATH).unwrap().1, 0o755);
        let svc =
            String::from_utf8(get("/covnet/services/01-httpd.sh").unwrap().0.clone()).unwrap();
        assert!(
            svc.contains("exec /bin/sh -c 'busybox httpd -f -p 80'"),
            "{svc}"
        );
        // The spec's /etc/hosts replaces covnet's.
        assert_eq!(get("/etc/hosts").unwrap().0, b"mine\n");
        assert_eq!(
            files.iter().filter(|(t, _, _)| t == "/etc/hosts").count(),
            1
        );
        let client = super::files(&spec, &spec.machines[1], &[]).unwrap();
        let hosts = client
            .iter()
            .find(|(t, _, _)| t == "/etc/hosts")
            .map(|(_, d, _)| String::from_utf8_lossy(d).into_owned())
            .unwrap();
        assert!(hosts.contains("192.168.1.1\tserver\n"), "{hosts}");
        assert!(hosts.contains("192.168.1.2\tclient\n"), "{hosts}");
    }

    #[test]
    fn wrapper_skips_kernel_only_mounts() {
        assert!(NS_INIT_SH.contains("devtmpfs"));
        assert!(NS_INIT_SH.contains(". /init"));
    }
}
