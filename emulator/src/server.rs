//! The HTTP server: one loopback port serving the AWS control plane (`POST /`), the console
//! federation endpoint (`GET /federation`), the keys EC2 Instance Connect pushed as an
//! instance reads them (`GET /ec2-instance-connect/…`) and the data-channel websockets
//! (`/v1/data-channel/{session_id}`), plus the in-process handle tests and benches use. It owns
//! startup, shutdown and the session tasks; it decides no protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use axum::serve::ListenerExt as _;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::auth::{BaseCredentials, CredentialStore, Principal};
use crate::config::EmulatorConfig;
use crate::document_store::DocumentStore;
use crate::error::EmulatorError;
use crate::federation::{FEDERATION_PATH, SigninGrant, SigninTokens};
use crate::fleet::{AccountSpec, Fleet};
use crate::instance_connect::{KEYS_ROUTE, PushedKeys};
use crate::instances::InstanceSpec;
use crate::kms::KeyStore;
use crate::sessions::Registry;
use crate::throttle::Throttle;
use crate::violations::{ViolationCounts, ViolationLog};
use crate::{control, datachannel, federation, instance_connect};

/// Entry point for starting an emulator in-process.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds, starts serving and returns once the endpoint accepts connections.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        if !config.listen.ip().is_loopback() {
            return Err(EmulatorError::NotLoopback(config.listen));
        }
        if let Some(url) = &config.public_url
            && !crate::auth::is_loopback_base(url)
        {
            return Err(EmulatorError::PublicUrlNotLoopback(url.to_string()));
        }
        if config.fleet.instances.is_empty() {
            return Err(EmulatorError::NoInstances);
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let violations = ViolationLog::open(config.violations_log.as_deref())?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let instances = config
            .fleet
            .instances
            .iter()
            .map(|spec| (spec.id.clone(), spec.clone()))
            .collect();
        let base = config
            .base_credentials
            .clone()
            .unwrap_or_else(BaseCredentials::random);
        let base_principal = Principal::base_user(&config.fleet.management_account);
        let shared = Arc::new(Shared {
            addr,
            instances,
            registry: Registry::default(),
            credentials: CredentialStore::new(base, base_principal),
            kms: KeyStore::default(),
            documents: DocumentStore::default(),
            signin_tokens: SigninTokens::default(),
            pushed_keys: PushedKeys::default(),
            throttle: config.throttle_rate.map(Throttle::new),
            violations,
            shutdown: shutdown_rx.clone(),
            tampered: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
            config,
        });
        let router = Router::new()
            .route("/", post(control::handle))
            .route(control::KMS_PATH, post(control::handle))
            // The SDK joins an endpoint's path and the operation's `/` into `/kms/`.
            .route(KMS_ROUTE_SLASH, post(control::handle))
            .route(DATA_CHANNEL_ROUTE, any(datachannel::upgrade))
            // The console federation endpoint's getSigninToken (POSTERN_FEDERATION_ENDPOINT).
            .route(FEDERATION_PATH, get(federation::handle))
            // The keys SendSSHPublicKey pushed, as an instance's metadata service lists them.
            .route(KEYS_ROUTE, get(instance_connect::active_keys))
            .with_state(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        let lifetime = shared.config.lifetime;
        let stop_tx = shutdown_tx.clone();
        let server = tokio::spawn(async move {
            let stopped = async move {
                match lifetime {
                    Some(limit) => {
                        tokio::select! {
                            _ = stop.wait_for(|stop| *stop) => {}
                            () = tokio::time::sleep(limit) => {
                                tracing::info!(?limit, "emulator lifetime reached, stopping");
                                let _ = stop_tx.send(true);
                            }
                        }
                    }
                    None => {
                        let _ = stop.wait_for(|stop| *stop).await;
                    }
                }
            };
            // Nagle off, as for the client: small echoes and acks must not wait for delayed acks.
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(%err, "could not disable Nagle on an accepted connection");
                }
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        });
        tracing::info!(%addr, "emulator listening");
        Ok(EmulatorHandle {
            shared,
            shutdown: shutdown_tx,
            server: Some(server),
        })
    }
}

/// A running emulator. Dropping it stops the emulator without waiting.
#[derive(Debug)]
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`: the endpoint for every AWS API the emulator serves (but KMS
    /// with [`EmulatorConfig::separate_kms_endpoint`]).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// KMS's own endpoint, `http://127.0.0.1:PORT/kms`, when KMS is served apart.
    pub fn kms_endpoint(&self) -> Option<String> {
        self.shared
            .config
            .separate_kms_endpoint
            .then(|| format!("http://{}{}", self.shared.addr, control::KMS_PATH))
    }

    /// The region the emulator reports.
    pub fn region(&self) -> &str {
        &self.shared.config.region
    }

    /// Instance ids, in fleet order.
    pub fn instances(&self) -> Vec<String> {
        self.shared
            .config
            .fleet
            .instances
            .iter()
            .map(|spec| spec.id.clone())
            .collect()
    }

    /// The instances with their accounts, regions and agent versions.
    pub fn instance_specs(&self) -> &[InstanceSpec] {
        &self.shared.config.fleet.instances
    }

    /// The fleet served.
    pub fn fleet(&self) -> &Fleet {
        &self.shared.config.fleet
    }

    /// The base credentials: long-term keys acting in the fleet's management account, random
    /// per run unless the configuration named them. Every request must be signed with these or
    /// with credentials the emulator issued.
    pub fn base_credentials(&self) -> &BaseCredentials {
        self.shared.credentials.base()
    }

    /// Sessions open now (started, neither terminated nor ended) and the most that were ever
    /// open at once: what a client limiting its concurrent sessions can be checked against.
    pub fn open_sessions(&self) -> (usize, usize) {
        self.shared.registry.open_sessions()
    }

    /// `http://127.0.0.1:PORT/federation`: the console federation endpoint
    /// (`getSigninToken`), for `POSTERN_FEDERATION_ENDPOINT`.
    pub fn federation_endpoint(&self) -> String {
        format!("http://{}{FEDERATION_PATH}", self.shared.addr)
    }

    /// `http://127.0.0.1:PORT/ec2-instance-connect/INSTANCE/latest/meta-data/managed-ssh-keys/active-keys/USER/`:
    /// the keys pushed for `user` on `instance` in the last 60 seconds, one per line (404 when
    /// none), for a test sshd's AuthorizedKeysCommand.
    pub fn active_keys_url(&self, instance: &str, user: &str) -> String {
        active_keys_url(&self.endpoint(), instance, user)
    }

    /// The sign-in token last issued for the role credentials `access_key_id`, if any.
    pub fn signin_token_for(&self, access_key_id: &str) -> Option<String> {
        self.signin_grant_for(access_key_id)
            .map(|grant| grant.token)
    }

    /// The sign-in token last issued for the role credentials `access_key_id`, with the role
    /// session it signs in as and the `SessionDuration` asked for.
    pub fn signin_grant_for(&self, access_key_id: &str) -> Option<SigninGrant> {
        self.shared.signin_tokens.grant_for(access_key_id)
    }

    /// Client violations recorded so far, by kind.
    pub fn violations(&self) -> ViolationCounts {
        self.shared.violations.counts()
    }

    /// The JSON ready line `postern emulator` prints.
    pub fn ready_line(&self) -> ReadyLine {
        let fleet = self.fleet();
        ReadyLine {
            endpoint: self.endpoint(),
            kms_endpoint: self.kms_endpoint(),
            region: self.region().to_owned(),
            instances: self.instances(),
            accounts: fleet.accounts.clone(),
            regions: fleet.regions.clone(),
            management_account: fleet.management_account.clone(),
            credentials: self.base_credentials().clone(),
        }
    }

    /// Resolves when the emulator has been asked to stop (by [`EmulatorHandle::shutdown`] from
    /// another clone of the signal, or because its lifetime elapsed).
    pub async fn stopping(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Stops serving, ends every session (their clients get `channel_closed`) and waits for
    /// the tasks, at most a few seconds.
    pub async fn shutdown(mut self) -> Result<ViolationCounts, EmulatorError> {
        let _ = self.shutdown.send(true);
        let mut tasks = std::mem::take(&mut *self.shared.lock_tasks());
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("sessions did not end in time, aborting them");
            tasks.abort_all();
        }
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
                Ok(Ok(Ok(()))) | Err(_) => {}
                Ok(Ok(Err(err))) => return Err(EmulatorError::Serve(err)),
                Ok(Err(join)) => {
                    return Err(EmulatorError::Serve(std::io::Error::other(join)));
                }
            }
        }
        Ok(self.violations())
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// What `postern emulator` prints once ready (one JSON line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadyLine {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// KMS's own endpoint, when KMS is served apart (`--separate-kms-endpoint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_endpoint: Option<String>,
    /// The default region.
    pub region: String,
    /// Instance ids.
    pub instances: Vec<String>,
    /// The accounts: `{"id","alias","env","roles"}` each.
    pub accounts: Vec<AccountSpec>,
    /// The regions the fleet spans.
    pub regions: Vec<String>,
    /// The account base credentials act in.
    pub management_account: String,
    /// The base credentials (`access_key_id`, `secret_access_key`), for the caller to sign
    /// with: the emulator refuses any key it does not know.
    #[serde(flatten)]
    pub credentials: BaseCredentials,
}

/// State shared by the HTTP handlers and the session tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) addr: SocketAddr,
    pub(crate) config: EmulatorConfig,
    pub(crate) instances: HashMap<String, InstanceSpec>,
    pub(crate) registry: Registry,
    pub(crate) credentials: CredentialStore,
    pub(crate) kms: KeyStore,
    pub(crate) documents: DocumentStore,
    pub(crate) signin_tokens: SigninTokens,
    pub(crate) pushed_keys: PushedKeys,
    pub(crate) throttle: Option<Throttle>,
    pub(crate) violations: ViolationLog,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Sessions tampered with so far ([`crate::config::Faults::tamper_sessions`]).
    pub(crate) tampered: Arc<AtomicU64>,
    tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    /// Runs a session task, tracked so shutdown can wait for it.
    pub(crate) fn spawn_session<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.lock_tasks();
        // Reap finished tasks so the set does not grow with every session.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// The websocket URL of a session: `ws://` on the listen address, or on the public URL
    /// (`wss://` for an `https` one).
    pub(crate) fn stream_url(&self, session_id: &str) -> String {
        let base = match &self.config.public_url {
            Some(url) => {
                let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
                let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
                format!("{scheme}://{authority}")
            }
            None => format!("ws://{}", self.addr),
        };
        format!("{base}/v1/data-channel/{session_id}?role=publish_subscribe")
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        // Spawning and taking are single operations: a poisoned set is still usable.
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`EmulatorHandle::active_keys_url`] for the emulator at `endpoint` (`http://127.0.0.1:PORT`).
pub fn active_keys_url(endpoint: &str, instance: &str, user: &str) -> String {
    let path = KEYS_ROUTE
        .replace("{instance}", instance)
        .replace("{user}", user);
    format!("{endpoint}{path}")
}

/// KMS's own endpoint as the SDK sends to it (`/kms` joined with the operation's `/`).
const KMS_ROUTE_SLASH: &str = "/kms/";
const DATA_CHANNEL_ROUTE: &str = "/v1/data-channel/{session_id}";
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
