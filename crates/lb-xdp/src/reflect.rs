//! `lbd reflect`: the benchmark's I/O ceiling. The same XDP program and
//! AF_XDP rings as `lbd run`, with no engine: every frame for the given
//! addresses is sent straight back out to one MAC address, only its
//! Ethernet header rewritten. What `lbd run` adds on top of this loop is
//! the cost of load balancing.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::XdpMode;
use crate::l2::L2;
use crate::netlink;
use crate::xdp::XdpProgram;
use crate::xsk::{Held, Xsk};

/// Frames forwarded and sleeps taken, for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReflectCounters {
    /// Frames sent on.
    pub forwarded: u64,
    /// Times the loop slept in `poll`.
    pub poll_sleeps: u64,
}

/// Forward every frame for `addresses` arriving on queue 0 of `interface`
/// to the MAC addresses of `to` in turn, until SIGINT or SIGTERM.
///
/// # Errors
/// The host refused the interface, XDP or AF_XDP.
pub fn reflect(
    interface: &str,
    mode: XdpMode,
    addresses: &[IpAddr],
    to: &[[u8; 6]],
) -> Result<ReflectCounters, String> {
    if to.is_empty() {
        return Err("no MAC address to send to".into());
    }
    let ifindex = netlink::ifindex(interface).map_err(|e| format!("{interface}: {e}"))?;
    let mac = netlink::mac_address(interface).map_err(|e| format!("{interface}: {e}"))?;
    let mut program = XdpProgram::load().map_err(|e| e.to_string())?;
    program
        .set_addresses(addresses)
        .map_err(|e| e.to_string())?;
    let mut xsk = Xsk::bind(ifindex, 0).map_err(|e| format!("AF_XDP: {e}"))?;
    program
        .set_socket(0, &xsk.fd())
        .map_err(|e| e.to_string())?;
    program
        .attach(interface, mode, None)
        .map_err(|e| e.to_string())?;
    let l2 = L2::new(ifindex, mac, 0).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let mut counters = ReflectCounters::default();
    let mut rx: Vec<Held> = Vec::with_capacity(64);
    let mut turn = to.iter().cycle();
    while !stop.load(Ordering::Relaxed) {
        xsk.recycle();
        // Frames that found the TX ring full, first.
        xsk.flush();
        rx.clear();
        xsk.receive(64, &mut rx);
        if rx.is_empty() {
            counters.poll_sleeps += 1;
            xsk.wait(if xsk.in_flight() > 0 { 1 } else { 100 });
            continue;
        }
        if let Some(chunks) = xsk.chunks_mut(&rx) {
            for (chunk, held) in chunks.into_iter().zip(&rx) {
                if let (Some(frame), Some(mac)) = (chunk.get_mut(held.start..held.end), turn.next())
                {
                    l2.write_header(frame, *mac);
                }
            }
        }
        counters.forwarded += u64::from(xsk.transmit(&rx));
    }
    Ok(counters)
}
