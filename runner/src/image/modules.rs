//! Kernel modules a guest needs, from the kernel's `modules.dep`, in the
//! order `insmod` must load them.
//!
//! Debian's 6.1 kernels build virtio as modules: `virtio_pci` (for the
//! devices), `virtio_console` (the control shell on `hvc0`), `virtio_net`
//! (the NICs) and `virtio_blk` (the disk that holds the machine's layer),
//! which pull in `virtio_ring`, `virtio`, the PCI transport
//! helpers and `failover`/`net_failover`. Modules compressed with gzip are
//! decompressed on the host (busybox `insmod` loads plain `.ko` files).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The modules every covnet guest loads (their dependencies come along).
/// `virtio_blk` is loaded at boot too, not after the release: a restored
/// guest runs every kernel path it did not run before the save through
/// TCG's translator again, and loading the driver then cost 0.12 s of each
/// restore (0.04 s at boot).
pub const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_console", "virtio_net", "virtio_blk"];

/// A module to load: its name and the host file holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Canonical name (`-` replaced by `_`, no extension), e.g. `virtio_pci`.
    pub name: String,
    /// Host file, e.g. `/lib/modules/<ver>/kernel/drivers/virtio/virtio_pci.ko`.
    pub path: PathBuf,
}

impl Module {
    /// The module's bytes, decompressed if the file is `.ko.gz`.
    pub fn read(&self) -> Result<Vec<u8>, ModuleError> {
        let raw = std::fs::read(&self.path).map_err(|e| ModuleError::Read {
            path: self.path.clone(),
            source: e,
        })?;
        let name = self.path.to_string_lossy();
        if name.ends_with(".ko") {
            Ok(raw)
        } else if name.ends_with(".ko.gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| ModuleError::Read {
                    path: self.path.clone(),
                    source: e,
                })?;
            Ok(out)
        } else {
            Err(ModuleError::UnsupportedCompression {
                path: self.path.clone(),
            })
        }
    }
}

/// Kernel modules that cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// A file cannot be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `modules.dep` line without `:`.
    #[error("{}:{line}: not a `module: deps...` line", path.display())]
    Malformed {
        /// The `modules.dep` file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// A module that is neither in `modules.dep` nor built in.
    #[error("kernel module `{name}` is not in {} nor built in", dep_file.display())]
    NotFound {
        /// The module.
        name: String,
        /// The `modules.dep` file.
        dep_file: PathBuf,
    },
    /// A module compressed with something other than gzip.
    #[error("kernel module {} is compressed in a format covnet cannot unpack (only .ko and .ko.gz)", path.display())]
    UnsupportedCompression {
        /// The file.
        path: PathBuf,
    },
    /// Dependencies that loop.
    #[error("kernel module dependencies loop through `{name}`")]
    Cycle {
        /// A module in the loop.
        name: String,
    },
}

/// The canonical module name of a `modules.dep` path.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// A parsed `modules.dep`: for each module, its file and its dependencies
/// (as relative paths, in the file's order).
#[derive(Debug, Clone, Default)]
pub struct ModuleDeps {
    dir: PathBuf,
    by_name: BTreeMap<String, (String, Vec<String>)>,
    builtin: Vec<String>,
}

impl ModuleDeps {
    /// Reads `<dir>/modules.dep` and (if present) `<dir>/modules.builtin`.
    pub fn load(dir: &Path) -> Result<ModuleDeps, ModuleError> {
        let dep_file = dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep_file).map_err(|e| ModuleError::Read {
            path: dep_file.clone(),
            source: e,
        })?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        ModuleDeps::parse(dir, &text, &builtin)
    }

    /// Parses `modules.dep` text (and `modules.builtin` text) of the modules
    /// directory `dir`.
    pub fn parse(
        dir: &Path,
        dep_text: &str,
        builtin_text: &str,
    ) -> Result<ModuleDeps, ModuleError> {
        let mut by_name = BTreeMap::new();
        for (i, line) in dep_text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((module, deps)) = line.split_once(':') else {
                return Err(ModuleError::Malformed {
                    path: dir.join("modules.dep"),
                    line: i + 1,
                });
            };
            let module = module.trim().to_owned();
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            by_name.insert(module_name(&module), (module, deps));
        }
        let builtin = builtin_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        Ok(ModuleDeps {
            dir: dir.to_path_buf(),
            by_name,
            builtin,
        })
    }

    /// The modules to load for `wanted`, dependencies first, each once.
    /// Built-in modules are skipped.
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<Module>, ModuleError> {
        let mut out = Vec::new();
        let mut visiting = Vec::new();
        for w in wanted {
            let name = w.replace('-', "_");
            if !self.by_name.contains_key(&name) && self.builtin.contains(&name) {
                continue;
            }
            self.visit(&name, &mut out, &mut visiting)?;
        }
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        out: &mut Vec<Module>,
        visiting: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if out.iter().any(|m| m.name == name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(ModuleError::Cycle {
                name: name.to_owned(),
            });
        }
        let Some((rel, deps)) = self.by_name.get(name) else {
            return Err(ModuleError::NotFound {
                name: name.to_owned(),
                dep_file: self.dir.join("modules.dep"),
            });
        };
        visiting.push(name.to_owned());
        // modules.dep lists dependencies so that the last one loads first.
        for dep in deps.iter().rev() {
            self.visit(&module_name(dep), out, visiting)?;
        }
        visiting.pop();
        let path = if rel.starts_with('/') {
            PathBuf::from(rel)
        } else {
            self.dir.join(rel)
        };
        out.push(Module {
            name: name.to_owned(),
            path,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko.gz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

    fn names(m: &[Module]) -> Vec<&str> {
        m.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn resolves_in_load_order() {
        let deps = ModuleDeps::parse(Path::new("/m"), DEP, "kernel/fs/ext4/ext4.ko\n").unwrap();
        let mods = deps.resolve(GUEST_MODULES).unwrap();
        assert_eq!(
            names(&mods),
            [
                "virtio_ring",
                "virtio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "virtio_console",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_blk"
            ]
        );
        assert_eq!(
            mods[0].path,
            PathBuf::from("/m/kernel/drivers/virtio/virtio_ring.ko")
        );
        assert_eq!(
            mods[8].path,
            PathBuf::from("/m/kernel/drivers/net/virtio_net.ko.gz")
        );
        // Built-in modules are skipped, unknown ones are errors.
        assert!(deps.resolve(&["ext4"]).unwrap().is_empty());
        let e = deps.resolve(&["nope"]).unwrap_err();
        assert!(e.to_string().contains("`nope`") && e.to_string().contains("/m/modules.dep"));
    }

    #[test]
    fn malformed_and_cyclic() {
        let e = ModuleDeps::parse(Path::new("/m"), "a.ko:\nbroken\n", "").unwrap_err();
        assert!(matches!(e, ModuleError::Malformed { line: 2, .. }));
        let deps = ModuleDeps::parse(Path::new("/m"), "a.ko: b.ko\nb.ko: a.ko\n", "").unwrap();
        assert!(matches!(
            deps.resolve(&["a"]).unwrap_err(),
            ModuleError::Cycle { .. }
        ));
    }

    #[test]
    fn names_and_compression() {
        assert_eq!(module_name("kernel/x/snd-hda.ko.xz"), "snd_hda");
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("m.ko.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"\x7fELFmodule").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let m = Module {
            name: "m".into(),
            path: gz,
        };
        assert_eq!(m.read().unwrap(), b"\x7fELFmodule");
        let xz = Module {
            name: "m".into(),
            path: dir.path().join("m.ko.xz"),
        };
        std::fs::write(&xz.path, b"x").unwrap();
        assert!(matches!(
            xz.read(),
            Err(ModuleError::UnsupportedCompression { .. })
        ));
    }

    #[test]
    fn host_kernel_has_the_virtio_modules() {
        // The kernel the setup script installed, found as covnet finds it:
        // its release moves with Debian's security updates.
        let kernel = crate::image::kernel::Kernel::host_default()
            .expect("a Debian cloud kernel in /boot (bash scripts/setup.sh)");
        let deps = ModuleDeps::load(&kernel.modules_dir).unwrap_or_else(|e| {
            panic!(
                "modules of {} in {}: {e} (bash scripts/setup.sh)",
                kernel.version,
                kernel.modules_dir.display()
            )
        });
        let mods = deps.resolve(GUEST_MODULES).unwrap();
        let n = names(&mods);
        assert_eq!(
            &n[..5],
            [
                "virtio_ring",
                "virtio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci"
            ]
        );
        assert!(n.contains(&"virtio_net") && n.contains(&"virtio_console"));
        for m in &mods {
            assert!(
                m.read().unwrap().starts_with(b"\x7fELF"),
                "{}",
                m.path.display()
            );
        }
    }
}
