//! Builds the gVisor stat shim (`shim/noautomount.c`) with the system C compiler, the one rustc
//! links with. Without a compiler (or off x86_64 Linux) the shim is empty and gVisor sandboxes
//! go without it; `paddock doctor` says so.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=shim/noautomount.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let shim = out.join("noautomount.so");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let built = arch == "x86_64"
        && os == "linux"
        && Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
            .args([
                "-O2",
                "-shared",
                "-fPIC",
                "-nostdlib",
                "-Wl,-soname,noautomount.so",
                "-o",
            ])
            .arg(&shim)
            .arg("shim/noautomount.c")
            .status()
            .is_ok_and(|s| s.success());
    if !built {
        println!(
            "cargo:warning=the gVisor stat shim was not built (no C compiler, or not x86_64 Linux): `ls -l` inside gVisor sandboxes will fail with EINVAL"
        );
        std::fs::write(&shim, b"").expect("write an empty shim");
    }
}
