//! Guest images: an initramfs per machine with busybox, the kernel modules
//! the guest needs, covnet's init, and the machine's programs (with their
//! ELF closure) and files; plus the choice of kernel.

pub mod closure;
pub mod cpio;
pub mod guest_files;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod pvh;
