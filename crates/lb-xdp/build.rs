//! Builds the XDP program (`bpf/lbd.bpf.c`) with clang into `OUT_DIR`;
//! `src/xdp.rs` embeds the object.

fn main() {
    bpf_build::compile("bpf/lbd.bpf.c", "lbd.bpf.o");
}
