//! Gives `libttm.so` a soname (`libttm.so.0`) on Linux, so that programs
//! linked with `-lttm` record the ABI's major version, not the file name.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libttm.so.0");
    }
}
