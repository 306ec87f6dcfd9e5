//! SOCKS destinations: one [`Pool`] per destination `host:port`, started on its first
//! CONNECT with no session (the pool opens one for the waiting connection) and shared by later
//! CONNECTs to the same destination. A pool idle for `--idle-close` ends its sessions and stops
//! taking connections; the next CONNECT to that destination starts a new pool.
//!
//! It must not touch sockets: listeners hand connections in, pools carry them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::aws::SsmClient;
use crate::forward::link::{Incoming, Notice};
use crate::forward::pool::{Pool, SessionCount};
use crate::forward::socks::codec::Destination;
use crate::forward::spec::{ForwardSpec, Remote};
use crate::forward::traffic::Traffic;
use crate::forward::{Connector, start_request};
use crate::transport::Resilience;

/// A CONNECT for the router.
#[derive(Debug)]
pub(crate) struct Routed {
    /// Where it goes.
    pub(crate) destination: Destination,
    /// The client's connection, waiting for its reply.
    pub(crate) incoming: Incoming,
}

/// What every destination's sessions share.
#[derive(Clone, Debug)]
pub(crate) struct Router {
    pub(crate) ssm: SsmClient,
    pub(crate) target: String,
    pub(crate) reason: Option<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) resilience: Resilience,
    pub(crate) sessions: SessionCount,
    pub(crate) idle_close: Duration,
    pub(crate) notices: mpsc::UnboundedSender<Notice>,
    pub(crate) traffic: Arc<Traffic>,
    /// The oldest agent that forwards to remote hosts (`feature`, version).
    pub(crate) min_agent: (&'static str, &'static str),
}

impl Router {
    /// Routes `requests` until `shutdown`, then waits for every pool to end its sessions.
    pub(crate) async fn run(
        self,
        mut requests: mpsc::UnboundedReceiver<Routed>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut pools: HashMap<Destination, mpsc::UnboundedSender<Incoming>> = HashMap::new();
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                routed = requests.recv() => match routed {
                    Some(routed) => self.dispatch(routed, &mut pools, &mut tasks, &shutdown),
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    pools.retain(|_, pool| !pool.is_closed());
                }
                _ = shutdown.changed() => break,
            }
        }
        requests.close();
        drop(pools);
        while tasks.join_next().await.is_some() {}
    }

    fn dispatch(
        &self,
        routed: Routed,
        pools: &mut HashMap<Destination, mpsc::UnboundedSender<Incoming>>,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let Routed {
            destination,
            incoming,
        } = routed;
        let incoming = match pools.get(&destination) {
            Some(pool) => match pool.send(incoming) {
                Ok(()) => return,
                // The pool closed for idleness a moment ago.
                Err(returned) => returned.0,
            },
            None => incoming,
        };
        tracing::info!(%destination, target = %self.target, "SOCKS destination: first connection");
        let (sender, source) = mpsc::unbounded_channel();
        // The receiver is alive: it was made just now.
        let _ = sender.send(incoming);
        pools.insert(destination.clone(), sender);
        let spec = ForwardSpec {
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            local_port: 0,
            remote: Remote {
                host: Some(destination.host_parameter()),
                port: destination.port,
            },
        };
        let connector = Connector::new(
            self.ssm.clone(),
            start_request(&self.target, &spec, self.reason.clone()),
            self.handshake_timeout,
        )
        .with_resilience(self.resilience.clone());
        let pool = Pool {
            source,
            local: destination.to_string(),
            connector,
            count: self.sessions,
            remote: destination.to_string(),
            notices: self.notices.clone(),
            shutdown: shutdown.clone(),
            traffic: self.traffic.clone(),
            idle_close: Some(self.idle_close),
            min_agent: Some(self.min_agent),
            answered: true,
            keep_warm: false,
        };
        tasks.spawn(pool.run(None));
    }
}
