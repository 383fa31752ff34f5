//! Fill an engine with 1,000,000 TCP sessions and print the heap bytes it
//! holds per session, counted by an allocator wrapper (stats_alloc), not
//! estimated.
//!
//! `cargo run --release -p lb-engine --example session_memory`
//!
//! The last line is `bytes_per_session N`: every byte the engine has
//! allocated (sessions, both keys' index, the half-open list, scheduler,
//! local port allocator, affinity table and quarantine), divided by the
//! sessions. The quarantine is sized by the close rate, not by the
//! sessions held, so it is set here to 65,536 tuples (1 MB); the lines
//! above give each part. 108 bytes: the 64-byte session, 33.7 bytes of
//! index and bookkeeping (see the table module), 8 for its place in the
//! half-open list, and the rest.

#![allow(clippy::indexing_slicing, clippy::expect_used, clippy::unwrap_used)] // a demo program, not the data path

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr};

use lb_engine::{
    BackendConfig, Engine, EngineConfig, Frame, Instant, ListenerConfig, LocalPool, Protocol,
    Verdict,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SESSIONS: u32 = 1_000_000;

fn syn(client: [u8; 4], port: u16, buf: &mut [u8; 128]) -> usize {
    // Ethernet, IPv4 (20 bytes), TCP SYN (20 bytes), checksums computed.
    buf.fill(0);
    buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut buf[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&client);
    ip[16..20].copy_from_slice(&[198, 51, 100, 1]);
    let sum = checksum(0, ip);
    ip[10..12].copy_from_slice(&(!fold(sum)).to_be_bytes());
    let tcp = &mut buf[34..54];
    tcp[0..2].copy_from_slice(&port.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = checksum(
        checksum(checksum(0, &client), &[198, 51, 100, 1]),
        &[0, 6, 0, 20],
    );
    let sum = checksum(pseudo, tcp);
    tcp[16..18].copy_from_slice(&(!fold(sum)).to_be_bytes());
    54
}

fn checksum(mut acc: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn main() {
    let region = Region::new(GLOBAL);
    let config = EngineConfig {
        capacity: SESSIONS,
        quarantine_capacity: 1 << 16,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).expect("engine");
    let locals = (0..8u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, 100 + i)))
        .collect();
    let mut listener = ListenerConfig::new(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        80,
        Protocol::Tcp,
        LocalPool::new(locals),
    );
    for i in 0..4u8 {
        let rs = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2 + i));
        listener.backends.push(BackendConfig::new(rs, 8080));
    }
    engine.add_listener(listener).expect("listener");
    let configured = region.change();

    let mut buf = [0u8; 128];
    let now = Instant::from_secs(1);
    for i in 0..SESSIONS {
        let host = i / 60_000;
        let client = [10, 64, (host >> 8) as u8, host as u8];
        let len = syn(client, 1024 + (i % 60_000) as u16, &mut buf);
        let mut frame = Frame::new(&mut buf, 0, len).expect("frame");
        let verdict = engine.handle_packet(now, &mut frame);
        assert!(
            matches!(verdict, Verdict::ToServer { .. }),
            "session {i}: {verdict:?}"
        );
    }
    assert_eq!(engine.session_count(), SESSIONS);
    let filled = region.change();
    let held = filled.bytes_allocated as i64 - filled.bytes_deallocated as i64;
    let at_config = configured.bytes_allocated as i64 - configured.bytes_deallocated as i64;

    println!("sessions {SESSIONS}");
    println!("engine_bytes_after_configuration {at_config}");
    println!(
        "allocations_while_filling {}",
        filled.allocations - configured.allocations
    );
    println!(
        "session_table_and_quarantine_bytes {}",
        engine.memory_bytes()
    );
    println!("engine_bytes_with_sessions {held}");
    println!("bytes_per_session {}", held / i64::from(SESSIONS));
}
