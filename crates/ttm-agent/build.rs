//! Builds the BPF programs (`bpf/ttm_agent.bpf.c`) with clang into
//! `OUT_DIR`; `src/programs.rs` embeds the object.

fn main() {
    bpf_build::compile("bpf/ttm_agent.bpf.c", "ttm_agent.bpf.o");
}
