//! Which kernel a guest boots, its version, and where its modules are.
//!
//! By default the host's newest Debian kernel in `/boot` (a `-cloud-` one
//! preferred: it is LZ4-compressed and boots seconds faster under TCG than
//! the XZ-compressed generic one); a spec may name another image.

use std::path::{Path, PathBuf};

/// A kernel image and its modules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The bzImage, e.g. `/boot/vmlinuz-<release>`.
    pub image: PathBuf,
    /// Its release (the part after `vmlinuz-`, as `uname -r` would say).
    pub version: String,
    /// `/lib/modules/<version>`.
    pub modules_dir: PathBuf,
}

/// No usable kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// Nothing matching `vmlinuz-*` in the boot directory.
    #[error("no kernel image (vmlinuz-*) in {}\n(hint: install one with `bash scripts/setup.sh`, or set `kernel` in the spec)", dir.display())]
    NoKernel {
        /// The directory searched.
        dir: PathBuf,
    },
    /// The image exists but cannot be read (Debian installs it mode 0600).
    #[error("kernel image {} is not readable\n(hint: `bash scripts/setup.sh` makes /boot/vmlinuz-* readable)", path.display())]
    Unreadable {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The release cannot be told from the name or the bzImage header.
    #[error("cannot tell the release of kernel {} (not named vmlinuz-<release>, no bzImage version string)", path.display())]
    UnknownVersion {
        /// The image.
        path: PathBuf,
    },
    /// No `modules.dep` for the release.
    #[error("kernel {} has no modules in {}\n(hint: install the matching linux-image package, e.g. with `bash scripts/setup.sh`)", image.display(), modules_dir.display())]
    NoModules {
        /// The image.
        image: PathBuf,
        /// The missing directory.
        modules_dir: PathBuf,
    },
}

impl Kernel {
    /// The host's default kernel: the newest `/boot/vmlinuz-*`, preferring
    /// `-cloud-` ones, with modules in `/lib/modules/<release>`.
    pub fn host_default() -> Result<Kernel, KernelError> {
        Kernel::default_in(Path::new("/boot"), Path::new("/lib/modules"))
    }

    /// The default kernel found in `boot_dir`, modules under `modules_root`.
    pub fn default_in(boot_dir: &Path, modules_root: &Path) -> Result<Kernel, KernelError> {
        let mut candidates: Vec<String> = std::fs::read_dir(boot_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_owned))
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // Cloud first, then newest release.
        candidates.sort_by(|a, b| {
            let cloud = |v: &str| v.contains("-cloud-");
            cloud(b)
                .cmp(&cloud(a))
                .then_with(|| version_key(b).cmp(&version_key(a)))
        });
        let Some(version) = candidates.into_iter().next() else {
            return Err(KernelError::NoKernel {
                dir: boot_dir.to_path_buf(),
            });
        };
        let image = boot_dir.join(format!("vmlinuz-{version}"));
        Kernel::with_version(image, version, modules_root)
    }

    /// The kernel at `image` (from a spec), modules under `/lib/modules`.
    pub fn from_image(image: &Path) -> Result<Kernel, KernelError> {
        Kernel::from_image_in(image, Path::new("/lib/modules"))
    }

    /// The kernel at `image`, modules under `modules_root`.
    pub fn from_image_in(image: &Path, modules_root: &Path) -> Result<Kernel, KernelError> {
        let from_name = image
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let version = match from_name {
            Some(v) => v,
            None => {
                let data = std::fs::read(image).map_err(|e| KernelError::Unreadable {
                    path: image.to_path_buf(),
                    source: e,
                })?;
                bzimage_version(&data).ok_or_else(|| KernelError::UnknownVersion {
                    path: image.to_path_buf(),
                })?
            }
        };
        Kernel::with_version(image.to_path_buf(), version, modules_root)
    }

    fn with_version(
        image: PathBuf,
        version: String,
        modules_root: &Path,
    ) -> Result<Kernel, KernelError> {
        if let Err(e) = std::fs::File::open(&image) {
            return Err(KernelError::Unreadable {
                path: image,
                source: e,
            });
        }
        let modules_dir = modules_root.join(&version);
        if !modules_dir.join("modules.dep").is_file() {
            return Err(KernelError::NoModules { image, modules_dir });
        }
        Ok(Kernel {
            image,
            version,
            modules_dir,
        })
    }
}

/// Orders release strings by their numbers: `6.1.0-99` > `6.1.0-9`.
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                num.clear();
            }
            text.push(c);
        }
    }
    if !num.is_empty() {
        out.push((num.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

/// The release from an x86 bzImage's setup header (`kernel_version`
/// pointer at 0x20e, string at pointer + 0x200), first word only.
pub fn bzimage_version(data: &[u8]) -> Option<String> {
    if data.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*data.get(0x20e)?, *data.get(0x20f)?]);
    if ptr == 0 {
        return None;
    }
    let start = usize::from(ptr) + 0x200;
    let rest = data.get(start..)?;
    let end = rest.iter().position(|&b| b == 0 || b == b' ')?;
    let v = std::str::from_utf8(rest.get(..end)?).ok()?;
    (!v.is_empty()).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_layout(versions: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        for v in versions {
            std::fs::write(dir.path().join(format!("boot/vmlinuz-{v}")), "k").unwrap();
            let m = dir.path().join(format!("modules/{v}"));
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(m.join("modules.dep"), "").unwrap();
        }
        dir
    }

    #[test]
    fn prefers_cloud_then_newest() {
        let d = fake_layout(&[
            "6.1.0-9-amd64",
            "6.1.0-99-amd64",
            "6.1.0-9-cloud-amd64",
            "6.1.0-10-cloud-amd64",
        ]);
        let k = Kernel::default_in(&d.path().join("boot"), &d.path().join("modules")).unwrap();
        assert_eq!(k.version, "6.1.0-10-cloud-amd64");
        assert_eq!(k.image, d.path().join("boot/vmlinuz-6.1.0-10-cloud-amd64"));
        assert_eq!(k.modules_dir, d.path().join("modules/6.1.0-10-cloud-amd64"));
        let d = fake_layout(&["6.1.0-9-amd64", "6.1.0-99-amd64"]);
        let k = Kernel::default_in(&d.path().join("boot"), &d.path().join("modules")).unwrap();
        assert_eq!(k.version, "6.1.0-99-amd64");
    }

    #[test]
    fn errors_carry_hints() {
        let d = fake_layout(&[]);
        let e = Kernel::default_in(&d.path().join("boot"), &d.path().join("modules")).unwrap_err();
        assert!(matches!(e, KernelError::NoKernel { .. }));
        assert!(e.to_string().contains("bash scripts/setup.sh"), "{e}");
        std::fs::write(d.path().join("boot/vmlinuz-7.0"), "k").unwrap();
        let e = Kernel::default_in(&d.path().join("boot"), &d.path().join("modules")).unwrap_err();
        assert!(matches!(e, KernelError::NoModules { .. }), "{e}");
        let other = d.path().join("bzImage");
        std::fs::write(&other, vec![0u8; 0x300]).unwrap();
        let e = Kernel::from_image_in(&other, &d.path().join("modules")).unwrap_err();
        assert!(matches!(e, KernelError::UnknownVersion { .. }), "{e}");
    }

    #[test]
    fn version_from_bzimage_header() {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let s = b"6.1.0-99-cloud-amd64 (debian-kernel@lists.debian.org) #1\0";
        img[0x300..0x300 + s.len()].copy_from_slice(s);
        assert_eq!(
            bzimage_version(&img).as_deref(),
            Some("6.1.0-99-cloud-amd64")
        );
        assert_eq!(bzimage_version(&img[..0x305]), None);
        assert_eq!(bzimage_version(b"short"), None);
    }

    #[test]
    fn host_kernel_is_found_and_header_agrees() {
        let k = Kernel::host_default().expect("a Debian kernel (bash scripts/setup.sh)");
        assert!(k.version.contains("-cloud-"), "{k:?}");
        let data = std::fs::read(&k.image).unwrap();
        assert_eq!(bzimage_version(&data).as_deref(), Some(k.version.as_str()));
    }
}
