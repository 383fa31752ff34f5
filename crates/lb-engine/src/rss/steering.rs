//! The RSS setting of one engine ([`RssSteering`]): the NIC's RSS
//! configuration and the receive queue whose engine this is. With it, the
//! engine's local-port allocator hands out only ports whose reply the
//! NIC's hash delivers on that queue (see [`crate::lport`]), so every
//! reply reaches the engine that holds its session without a hand-off.
//!
//! The configuration is shared by every queue's engine of an interface
//! and lives as long as the process: a `&'static` reference keeps
//! [`crate::EngineConfig`] `Copy` and costs one allocation per interface
//! (`lbd` leaks it once at start; 36 KiB of Toeplitz tables and the
//! indirection table).

use super::RssConfig;

/// An engine's RSS-aware mode: the NIC's configuration and the queue the
/// engine serves.
#[derive(Debug, Clone, Copy)]
pub struct RssSteering {
    /// The NIC's RSS configuration, the same for every queue's engine.
    pub config: &'static RssConfig,
    /// The queue whose frames this engine handles (below
    /// [`RssConfig::queues`]).
    pub queue: u16,
}

impl PartialEq for RssSteering {
    /// The same configuration (the same object) and queue.
    fn eq(&self, other: &RssSteering) -> bool {
        core::ptr::eq(self.config, other.config) && self.queue == other.queue
    }
}

impl Eq for RssSteering {}

#[cfg(test)]
mod test {
    use super::*;
    use crate::rss::FlowFields;
    use alloc::boxed::Box;

    #[test]
    fn equal_is_the_same_configuration_and_queue() {
        let c = RssConfig::new(&[7; 40], &[0, 1], FlowFields::ALL_PORTS, 2).unwrap();
        let a: &'static RssConfig = Box::leak(Box::new(c.clone()));
        let b: &'static RssConfig = Box::leak(Box::new(c));
        let s = |config, queue| RssSteering { config, queue };
        assert_eq!(s(a, 1), s(a, 1));
        assert_ne!(s(a, 1), s(a, 0));
        assert_ne!(s(a, 1), s(b, 1));
    }
}
