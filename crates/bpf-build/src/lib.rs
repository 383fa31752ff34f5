//! Compiles a BPF program written in C into `OUT_DIR`, for the build
//! scripts of the crates that load one (`lb-xdp`, `ttm-agent`):
//! `clang -O2 -g -target bpf`, warnings as errors. `-g` keeps the BTF that
//! the loader (aya) passes to the kernel, which maps such as socket
//! storage need. `scripts/setup` installs clang and libbpf-dev (for
//! `<bpf/bpf_helpers.h>`); `$CLANG` names another compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Compile `source` (relative to the crate) into `OUT_DIR/object`, and
/// tell cargo when to do it again. Stops the build with a message that
/// says what to install if clang is missing or fails.
pub fn compile(source: &str, object: &str) {
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join(object);
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
