//! Builds the XDP program (`bpf/lbd.bpf.c`) with clang into `OUT_DIR`;
//! `src/xdp.rs` embeds the object. scripts/setup installs clang and
//! libbpf-dev (for `bpf/bpf_helpers.h`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/lbd.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("lbd.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // The kernel's UAPI headers include <asm/types.h>, which Debian keeps
    // under the host's multiarch directory.
    let multiarch = format!(
        "/usr/include/{}-linux-gnu",
        env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_owned())
    );
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-I", &multiarch, "-c", source, "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("{clang} failed on {source} ({s})")),
        Err(e) => fail(&format!(
            "cannot run {clang} ({e}): install clang and libbpf-dev (scripts/setup does)"
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
