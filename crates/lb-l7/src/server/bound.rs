//! A Pingora listening service started on sockets this crate bound.
//!
//! Pingora binds its listeners inside the service's task, after the
//! server started, and a failure there is a panic in that task that
//! nobody sees. Instead, [`crate::server::L7::start`] binds every address
//! itself (so a busy or foreign address is an error returned to the
//! caller), and hands the sockets to Pingora through the file-descriptor
//! table Pingora reads for a graceful upgrade: its listener takes a socket
//! from the table when the address is there, and binds nothing.

use std::net::TcpListener;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

use super::app::App;

/// A listening service and the socket it serves.
pub(crate) struct Bound {
    service: Service<App>,
    fds: ListenFds,
}

impl Bound {
    /// `service` serving `listener`, whose address `service` was given
    /// (`add_tcp`) as `key`.
    pub(crate) fn new(service: Service<App>, key: String, listener: TcpListener) -> Bound {
        let mut fds = Fds::new();
        // Ownership of the socket passes to Pingora's listener, which
        // closes it when the service stops.
        fds.add(key, listener.into_raw_fd());
        Bound {
            service,
            fds: Arc::new(parking_lot::Mutex::new(fds)),
        }
    }
}

#[async_trait]
impl ServiceWithDependents for Bound {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        ready_notifier.notify_ready();
        pingora::services::Service::start_service(
            &mut self.service,
            Some(Arc::clone(&self.fds)),
            shutdown,
            listeners_per_fd,
        )
        .await;
    }

    fn name(&self) -> &str {
        pingora::services::Service::name(&self.service)
    }

    fn threads(&self) -> Option<usize> {
        pingora::services::Service::threads(&self.service)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        pingora::services::Service::listen_addresses(&self.service)
    }
}
