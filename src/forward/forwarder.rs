//! `postern forward`: bind every `-L` and `-D` listener, start each `-L` forward's first
//! session (in parallel) so that the target, the agent and the mode are known before anything
//! is announced, then run one [`Pool`] per forward and the SOCKS listeners (sessions per
//! destination, opened on first use) until shutdown.
//!
//! It must not print: readiness is returned as [`ForwardReady`], trouble as [`Notice`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::aws::{SsmClient, StartSessionRequest};
use crate::forward::connect::{ConnectError, Connected, Connector};
use crate::forward::link::Notice;
use crate::forward::listener::{self, BindError};
use crate::forward::pool::{self, LinkMode, Pool, SessionCount, link_mode};
use crate::forward::socks::{self, Router, SocksAuth};
use crate::forward::spec::{ForwardSpec, SocksSpec};
use crate::forward::traffic::Traffic;
use crate::transport::Resilience;

/// What `postern forward` does.
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    /// The instance.
    pub target: String,
    /// The `-L` arguments.
    pub forwards: Vec<ForwardSpec>,
    /// `--sessions`.
    pub sessions: SessionCount,
    /// StartSession reason.
    pub reason: Option<String>,
    /// Limit for each session's handshake.
    pub handshake_timeout: Duration,
    /// Keepalive and reconnection of every session.
    pub resilience: Resilience,
    /// The `-D` arguments.
    pub socks: Vec<SocksSpec>,
    /// How long a SOCKS destination's sessions stay open without connections.
    pub idle_close: Duration,
    /// The username and password SOCKS clients must give, if any.
    pub socks_auth: Option<SocksAuth>,
}

/// A SOCKS listener that accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocksReady {
    /// The address it listens on.
    pub local: SocketAddr,
    /// The instance CONNECTs go through.
    pub target: String,
    /// Whether clients must authenticate (RFC 1929).
    pub auth: bool,
}

/// A forward that accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardReady {
    /// The address it listens on.
    pub local: SocketAddr,
    /// Where connections go, as `host:port` seen from the instance.
    pub remote: String,
    /// The instance.
    pub target: String,
    /// Mux or basic.
    pub mode: LinkMode,
    /// The agent's version, from the first session's handshake.
    pub agent_version: String,
    /// The first session's id.
    pub session_id: String,
}

/// Forwards whose first sessions are up; [`Forwarder::run`] serves them.
#[derive(Debug)]
pub struct Forwarder {
    ready: Vec<ForwardReady>,
    parts: Vec<(TcpListener, Connector, Connected)>,
    socks_ready: Vec<SocksReady>,
    socks_listeners: Vec<TcpListener>,
    /// What SOCKS sessions are started with; `None` without `-D` or without an SSM client.
    router: Option<Router>,
    options: ForwardOptions,
    traffic: Arc<Traffic>,
    keep_warm: bool,
}

/// Why the forwards could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A local listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A forward's first session failed.
    #[error("could not start the session for {remote}")]
    Connect {
        /// The forward's remote end.
        remote: String,
        /// Why.
        #[source]
        source: Box<ConnectError>,
    },
    /// The agent lacks something the forward needs.
    #[error(
        "the SSM agent (version {agent_version}) is too old to {feature}; it needs {needed} or later"
    )]
    AgentTooOld {
        /// The agent's version.
        agent_version: String,
        /// What the user asked for.
        feature: &'static str,
        /// The first agent version that supports it.
        needed: &'static str,
    },
}

impl Forwarder {
    /// Binds every listener, then starts every forward's first session.
    pub async fn start(ssm: SsmClient, options: &ForwardOptions) -> Result<Self, ForwardError> {
        let socks_ssm = ssm.clone();
        let connectors: Vec<Connector> = options
            .forwards
            .iter()
            .map(|spec| {
                Connector::new(
                    ssm.clone(),
                    start_request(&options.target, spec, options.reason.clone()),
                    options.handshake_timeout,
                )
                .with_resilience(options.resilience.clone())
            })
            .collect();
        let mut forwarder = Self::start_with(options, connectors).await?;
        if !options.socks.is_empty() {
            if let Err(e) = socks_agent_check(&ssm, &forwarder, &options.target).await {
                for (_, connector, connected) in &forwarder.parts {
                    connector.terminate(&connected.session_id).await;
                }
                return Err(e);
            }
            forwarder.router = Some(Router {
                ssm: socks_ssm,
                target: options.target.clone(),
                reason: options.reason.clone(),
                handshake_timeout: options.handshake_timeout,
                resilience: options.resilience.clone(),
                sessions: options.sessions,
                idle_close: options.idle_close,
                // Filled in by `run`, which owns the notice channel.
                notices: mpsc::unbounded_channel().0,
                traffic: forwarder.traffic.clone(),
                min_agent: ("forward to a remote host", REMOTE_HOST_MIN_AGENT),
            });
        }
        Ok(forwarder)
    }

    /// [`Forwarder::start`] with one connector per forward, in `-L` order (for a session
    /// started elsewhere: [`Connector::adopting`]).
    pub async fn start_with(
        options: &ForwardOptions,
        connectors: Vec<Connector>,
    ) -> Result<Self, ForwardError> {
        let mut listeners = Vec::new();
        for spec in &options.forwards {
            listeners.push(listener::bind(spec).await?);
        }
        let mut socks_listeners = Vec::new();
        let mut socks_ready = Vec::new();
        for spec in &options.socks {
            let (listener, local) = listener::bind_socks(spec).await?;
            socks_listeners.push(listener);
            socks_ready.push(SocksReady {
                local,
                target: options.target.clone(),
                auth: options.socks_auth.is_some(),
            });
        }
        let results = join_all(connectors.iter().map(Connector::connect)).await;
        let mut connected = Vec::new();
        let mut failure = None;
        for (spec, result) in options.forwards.iter().zip(results) {
            match result {
                Ok(c) => connected.push(c),
                Err(source) => {
                    failure.get_or_insert(ForwardError::Connect {
                        remote: spec.remote.to_string(),
                        source: Box::new(source),
                    });
                }
            }
        }
        let check = failure.map_or_else(|| check_agents(&options.forwards, &connected), Err);
        if let Err(e) = check {
            for (c, connector) in connected.iter().zip(&connectors) {
                connector.terminate(&c.session_id).await;
            }
            return Err(e);
        }
        let mut ready = Vec::new();
        let mut parts = Vec::new();
        for (((listener, local), connector), c) in
            listeners.into_iter().zip(connectors).zip(connected)
        {
            let spec = &options.forwards[ready.len()];
            ready.push(ForwardReady {
                local,
                remote: spec.remote.to_string(),
                target: options.target.clone(),
                mode: link_mode(&c),
                agent_version: c.ready.agent_version.clone().unwrap_or_default(),
                session_id: c.session_id.clone(),
            });
            parts.push((listener, connector, c));
        }
        Ok(Self {
            ready,
            parts,
            socks_ready,
            socks_listeners,
            router: None,
            options: options.clone(),
            traffic: Arc::new(Traffic::default()),
            keep_warm: false,
        })
    }

    /// Keeps a session open for every `-L` forward (a background tunnel): when all of a
    /// forward's sessions end, another starts, with backoff; a forward that can never work
    /// again records why in [`Traffic::failure`] and stops.
    pub fn keeping_sessions_open(mut self) -> Self {
        self.keep_warm = true;
        self
    }

    /// The forwards, in `-L` order.
    pub fn ready(&self) -> &[ForwardReady] {
        &self.ready
    }

    /// The SOCKS listeners, in `-D` order.
    pub fn socks_ready(&self) -> &[SocksReady] {
        &self.socks_ready
    }

    /// The live counters of every forward and SOCKS listener.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }

    /// Serves the forwards until `shutdown` becomes true; ends every session before returning.
    /// Dropping the future (or aborting its task) stops every listener, pool and link at once:
    /// the sessions they leave open stay in the ledger, for the exit sweep or
    /// [`ledger::end_left_by`](crate::transport::ledger::end_left_by).
    pub async fn run(
        self,
        notices: mpsc::UnboundedSender<Notice>,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut tasks = JoinSet::new();
        for (ready, (listener, connector, first)) in self.ready.iter().zip(self.parts) {
            let (into, source) = mpsc::unbounded_channel();
            let local = ready.local.to_string();
            tasks.spawn(pool::accept(
                listener,
                local.clone(),
                into,
                notices.clone(),
                shutdown.clone(),
            ));
            let pool = Pool {
                source,
                local,
                connector,
                count: self.options.sessions,
                remote: ready.remote.clone(),
                notices: notices.clone(),
                shutdown: shutdown.clone(),
                traffic: self.traffic.clone(),
                idle_close: None,
                min_agent: None,
                answered: false,
                keep_warm: self.keep_warm,
            };
            tasks.spawn(pool.run(Some(first)));
        }
        if let Some(mut router) = self.router {
            router.notices = notices.clone();
            let (to_router, requests) = mpsc::unbounded_channel();
            let auth = self.options.socks_auth.clone().map(Arc::new);
            for (listener, ready) in self.socks_listeners.into_iter().zip(&self.socks_ready) {
                let config = socks::Listener {
                    local: ready.local,
                    auth: auth.clone(),
                    target: ready.target.clone(),
                    router: to_router.clone(),
                    notices: notices.clone(),
                };
                tasks.spawn(socks::serve(listener, config, shutdown.clone()));
            }
            drop(to_router);
            tasks.spawn(router.run(requests, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The StartSession request for one forward (SPEC.md §1.2).
pub fn start_request(
    target: &str,
    spec: &ForwardSpec,
    reason: Option<String>,
) -> StartSessionRequest {
    let mut parameters = HashMap::new();
    parameters.insert("portNumber".to_owned(), vec![spec.remote.port.to_string()]);
    parameters.insert(
        "localPortNumber".to_owned(),
        vec![spec.local_port.to_string()],
    );
    let document = match &spec.remote.host {
        Some(host) => {
            parameters.insert("host".to_owned(), vec![host.clone()]);
            REMOTE_HOST_DOCUMENT
        }
        None => INSTANCE_DOCUMENT,
    };
    StartSessionRequest {
        target: target.to_owned(),
        document_name: Some(document.to_owned()),
        parameters,
        reason,
    }
}

/// A SOCKS proxy opens every connection through the remote-host document: refused at start
/// when the target's agent is too old for it, rather than listening and then failing every
/// CONNECT. The agent version comes from a `-L` session already open, else from
/// DescribeInstanceInformation; when that cannot tell (no permission, not an instance id, no
/// version reported), each connection still says why it failed.
async fn socks_agent_check(
    ssm: &SsmClient,
    forwarder: &Forwarder,
    target: &str,
) -> Result<(), ForwardError> {
    let known = forwarder
        .ready
        .first()
        .map(|ready| ready.agent_version.clone())
        .filter(|v| !v.is_empty());
    let agent = match known {
        Some(agent) => agent,
        None => match ssm.agent_version(target).await {
            Ok(Some(agent)) => agent,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "agent version unknown: the SOCKS proxy starts anyway");
                return Ok(());
            }
        },
    };
    if agent_at_least(&agent, REMOTE_HOST_MIN_AGENT) {
        return Ok(());
    }
    Err(ForwardError::AgentTooOld {
        agent_version: agent,
        feature: "act as a SOCKS proxy (each connection is a forward to a remote host)",
        needed: REMOTE_HOST_MIN_AGENT,
    })
}

fn check_agents(forwards: &[ForwardSpec], connected: &[Connected]) -> Result<(), ForwardError> {
    for (spec, c) in forwards.iter().zip(connected) {
        let agent = c.ready.agent_version.as_deref().unwrap_or_default();
        if spec.remote.host.is_some() && !agent_at_least(agent, REMOTE_HOST_MIN_AGENT) {
            return Err(ForwardError::AgentTooOld {
                agent_version: agent.to_owned(),
                feature: "forward to a remote host",
                needed: REMOTE_HOST_MIN_AGENT,
            });
        }
    }
    Ok(())
}

/// `version` >= `minimum`, compared as the plugin compares (SPEC.md §6.9).
pub fn agent_at_least(version: &str, minimum: &str) -> bool {
    matches!(
        postern_protocol::version::plugin_compare(version, minimum),
        Ok(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// Port forwarding to the instance itself.
const INSTANCE_DOCUMENT: &str = "AWS-StartPortForwardingSession";
/// Port forwarding through the instance to another host.
const REMOTE_HOST_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// AWS-StartPortForwardingSessionToRemoteHost needs SSM Agent 3.1.1374.0 (AWS Systems Manager
/// user guide, "Port forwarding to remote hosts").
const REMOTE_HOST_MIN_AGENT: &str = "3.1.1374.0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_right_document_and_parameters() {
        let spec: ForwardSpec = "0:db.internal:5432".parse().unwrap();
        let r = start_request("i-0abc", &spec, None);
        assert_eq!(r.document_name.as_deref(), Some(REMOTE_HOST_DOCUMENT));
        assert_eq!(r.parameters["host"], vec!["db.internal"]);
        assert_eq!(r.parameters["portNumber"], vec!["5432"]);
        assert_eq!(r.parameters["localPortNumber"], vec!["0"]);
        let spec: ForwardSpec = "8080:80".parse().unwrap();
        let r = start_request("i-0abc", &spec, None);
        assert_eq!(r.document_name.as_deref(), Some(INSTANCE_DOCUMENT));
        assert!(!r.parameters.contains_key("host"));
    }

    #[test]
    fn version_minimums_compare_numerically() {
        assert!(agent_at_least("3.3.0.0", REMOTE_HOST_MIN_AGENT));
        assert!(agent_at_least("3.1.1374.0", REMOTE_HOST_MIN_AGENT));
        assert!(!agent_at_least("3.0.161.0", REMOTE_HOST_MIN_AGENT));
        assert!(!agent_at_least("garbage", REMOTE_HOST_MIN_AGENT));
    }
}
