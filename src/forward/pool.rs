//! The sessions of one forward (a `-L` listener, or one SOCKS destination): takes local
//! connections from its source and spreads them over lazily opened SSM sessions (links),
//! reusing them while they live (`--sessions`). A pool with an idle limit (SOCKS destinations)
//! ends its sessions once it has carried no connection for that long.
//!
//! Policy ([`decide`], pure): a connection goes to the least-loaded link that has room: fewer
//! than `per_session` connections and, with `--sessions auto` on a mux link, not saturated
//! (delivering near the agent's per-session pace, or given a connection too recently to tell);
//! otherwise another session is opened (and the connection waits for it) until `max` sessions
//! exist; beyond that, mux links take more connections each and basic links make them wait for
//! a free session. `auto` ends extra sessions that carried nothing for [`AUTO_IDLE_CLOSE`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::aws::AwsErrorKind;
use crate::forward::connect::{ConnectError, Connected};
use crate::forward::link::{Incoming, LinkContext, LinkHandle, Notice, Outcome};
use crate::forward::listener::AcceptBackoff;
use crate::forward::traffic::Traffic;
use crate::forward::{Connector, agent_at_least, basic_link, mux_link};
use crate::transport;

/// How many sessions a forward may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCount {
    /// Up to [`AUTO_MAX_SESSIONS`], opened as the open ones saturate: a mux session takes
    /// another connection only while it delivers well below the agent's pace (and at most
    /// [`AUTO_PER_SESSION`]); extra sessions idle for [`AUTO_IDLE_CLOSE`] are closed. Basic
    /// mode: one connection per session.
    Auto,
    /// Up to this many; every concurrent connection gets its own session while there are
    /// fewer.
    Fixed(usize),
}

/// How a link carries connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// smux: many connections per session.
    Mux,
    /// One connection at a time per session.
    Basic,
}

/// The spreading rule for one forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Most sessions.
    pub(crate) max: usize,
    /// Connections a session takes before another is opened.
    pub(crate) per_session: usize,
    /// Whether `per_session` is a hard limit (basic mode).
    pub(crate) hard: bool,
    /// Whether a saturated link counts as full (`auto` on mux links), and extra idle sessions
    /// close.
    pub(crate) adaptive: bool,
}

/// What [`decide`] knows of one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkLoad {
    /// Connections it carries.
    pub(crate) connections: usize,
    /// It delivers near the agent's pace, or took a connection too recently to tell.
    pub(crate) saturated: bool,
    /// It waits for a local client that does not read: a new connection would wait too.
    pub(crate) stalled: bool,
}

/// What to do with the connection at the head of the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Give it to the link at this index.
    Dispatch(usize),
    /// Open another session (then decide again).
    Open,
    /// Keep it queued until a session opens or frees up.
    Wait,
}

impl Policy {
    /// The rule for `count` sessions in `mode`.
    pub(crate) fn new(count: SessionCount, mode: LinkMode) -> Self {
        match (count, mode) {
            (SessionCount::Auto, LinkMode::Mux) => Self {
                max: AUTO_MAX_SESSIONS,
                per_session: AUTO_PER_SESSION,
                hard: false,
                adaptive: true,
            },
            (SessionCount::Auto, LinkMode::Basic) => Self {
                max: AUTO_MAX_SESSIONS,
                per_session: 1,
                hard: true,
                adaptive: false,
            },
            (SessionCount::Fixed(n), mode) => Self {
                max: n.max(1),
                per_session: 1,
                hard: mode == LinkMode::Basic,
                adaptive: false,
            },
        }
    }
}

/// Decides for the head of a queue of `queued` connections, given each link's load and the
/// number of sessions being opened (each expected to take one waiting connection).
pub(crate) fn decide(
    links: &[LinkLoad],
    opening: usize,
    queued: usize,
    policy: Policy,
) -> Decision {
    let roomy = links
        .iter()
        .enumerate()
        .filter(|(_, l)| l.connections < policy.per_session && !l.saturated && !l.stalled)
        .min_by_key(|(_, l)| l.connections);
    if let Some((i, _)) = roomy {
        return Decision::Dispatch(i);
    }
    if links.len() + opening < policy.max && queued > opening {
        return Decision::Open;
    }
    if opening > 0 && queued <= opening {
        return Decision::Wait;
    }
    // A stalled link only when every one is.
    let least = links
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| (l.stalled, l.connections));
    match least {
        Some((i, l)) if !policy.hard || l.connections < policy.per_session => Decision::Dispatch(i),
        _ => Decision::Wait,
    }
}

impl LinkHandle {
    /// What [`decide`] needs of this link at `now`.
    fn view(&self, now: Instant, policy: Policy) -> LinkLoad {
        let connections = self.load();
        let probing = self
            .assigned_at
            .is_some_and(|at| now.saturating_duration_since(at) < AUTO_PROBE);
        LinkLoad {
            connections,
            saturated: policy.adaptive
                && connections > 0
                && (probing || self.rate >= AUTO_SATURATED_RATE),
            stalled: self.is_stalled(),
        }
    }
}

/// One forward's sessions.
pub(crate) struct Pool {
    /// Where connections come from: a listener's accept task, or the SOCKS router.
    pub(crate) source: mpsc::UnboundedReceiver<Incoming>,
    /// The forward's name in notices: its local address, or the SOCKS destination.
    pub(crate) local: String,
    pub(crate) connector: Connector,
    pub(crate) count: SessionCount,
    pub(crate) remote: String,
    pub(crate) notices: mpsc::UnboundedSender<Notice>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) traffic: Arc<Traffic>,
    /// End the sessions after this long without connections (and stop taking new ones).
    pub(crate) idle_close: Option<Duration>,
    /// The oldest agent sessions opened here may have (`feature`, version), checked on each.
    pub(crate) min_agent: Option<(&'static str, &'static str)>,
    /// Connections carry SOCKS answers, which report session failures themselves.
    pub(crate) answered: bool,
    /// Keep a session open at all times (background tunnels): when every session has ended,
    /// start another with backoff; give up (the forward fails, [`Traffic::failure`]) when the
    /// service refuses for good or after [`RESTART_ATTEMPTS`] failures in a row.
    pub(crate) keep_warm: bool,
}

impl Pool {
    /// Runs until shutdown (or, with an idle limit, until idle that long), starting with the
    /// already connected `first` session if there is one.
    pub(crate) async fn run(mut self, first: Option<Connected>) {
        let mode = first.as_ref().map_or(LinkMode::Mux, link_mode);
        let mut policy = Policy::new(self.count, mode);
        let pool_wake = Arc::new(Notify::new());
        let ctx = LinkContext {
            connector: self.connector.clone(),
            notices: self.notices.clone(),
            remote: self.remote.clone(),
            shutdown: self.shutdown.clone(),
            pool_wake: pool_wake.clone(),
            traffic: self.traffic.clone(),
        };
        let mut shutdown = self.shutdown.clone();
        let mut links: Vec<LinkHandle> = Vec::new();
        let mut tasks = JoinSet::new();
        let mut opens: JoinSet<Result<Connected, ConnectError>> = JoinSet::new();
        let mut queue: VecDeque<Incoming> = VecDeque::new();
        let mut source_open = true;
        let mut idle_since = None;
        let mut restart = Restart::default();
        let mut last_sample = transport::now();
        if let Some(first) = first {
            links.push(start_link(first, &ctx, &mut tasks));
        }
        loop {
            links.retain(LinkHandle::is_alive);
            // Hand out queued connections.
            while let Some(stream) = queue.pop_front() {
                let now = transport::now();
                let loads: Vec<LinkLoad> = links.iter().map(|l| l.view(now, policy)).collect();
                match decide(&loads, opens.len(), queue.len() + 1, policy) {
                    Decision::Dispatch(i) => {
                        let link = &mut links[i];
                        link.assigned_at = Some(now);
                        link.idle_since = None;
                        link.load.fetch_add(1, Ordering::AcqRel);
                        if let Err(returned) = link.conns.send(stream) {
                            // The link just ended: try again without it.
                            link.load.fetch_sub(1, Ordering::AcqRel);
                            queue.push_front(returned.0);
                            links.remove(i);
                        }
                    }
                    Decision::Open => {
                        queue.push_front(stream);
                        tracing::debug!(
                            sessions = links.len() + opens.len() + 1,
                            "opening another session"
                        );
                        opens.spawn(open(self.connector.clone(), self.min_agent));
                    }
                    Decision::Wait => {
                        queue.push_front(stream);
                        break;
                    }
                }
            }
            let idle = queue.is_empty() && opens.is_empty() && links.iter().all(|l| l.load() == 0);
            if !idle {
                idle_since = None;
            } else if !source_open {
                break;
            } else if idle_since.is_none() {
                idle_since = Some(transport::now());
            }
            let idle_deadline = self.idle_close.zip(idle_since).map(|(after, t)| t + after);
            let (sample_at, extra_idle_at) = if policy.adaptive {
                adapt(&mut links, &mut last_sample)
            } else {
                (None, None)
            };
            if self.keep_warm && links.is_empty() && opens.is_empty() && restart.at.is_none() {
                restart.schedule(&self.traffic);
            }
            tokio::select! {
                incoming = self.source.recv(), if source_open => match incoming {
                    Some(incoming) => queue.push_back(incoming),
                    None => source_open = false,
                },
                Some(opened) = opens.join_next(), if !opens.is_empty() => match opened {
                    Ok(Ok(connected)) => {
                        restart.succeeded(&self.traffic);
                        if links.is_empty() {
                            // The first session of a pool that started without one.
                            policy = Policy::new(self.count, link_mode(&connected));
                        }
                        links.push(start_link(connected, &ctx, &mut tasks));
                    }
                    Ok(Err(error)) => {
                        if self.keep_warm && restart.failed(&error, &self.traffic) {
                            tracing::warn!(remote = %self.remote, %error, "giving up on the forward");
                            break;
                        }
                        if !self.answered {
                            let _ = self.notices.send(Notice::SessionFailed {
                                target: self.connector.request().target.clone(),
                                reason: crate::report::error_chain(&error),
                            });
                        }
                        links.retain(LinkHandle::is_alive);
                        if links.is_empty() && opens.is_empty() {
                            for incoming in queue.drain(..) {
                                if incoming.answer.is_none() {
                                    let _ = self.notices.send(Notice::ConnectionDropped {
                                        local: self.local.clone(),
                                    });
                                }
                                incoming.refuse(Outcome::NoSession(&error));
                            }
                        }
                    }
                    Err(join_error) => tracing::warn!(%join_error, "session opener failed"),
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = pool_wake.notified() => {}
                () = transport::sleep_until(sample_at), if sample_at.is_some() => {}
                () = transport::sleep_until(extra_idle_at), if extra_idle_at.is_some() => {}
                () = transport::sleep_until(restart.at), if restart.at.is_some() => {
                    restart.at = None;
                    if links.is_empty() && opens.is_empty() {
                        tracing::info!(remote = %self.remote, attempt = restart.attempts + 1, "restarting the session");
                        opens.spawn(open(self.connector.clone(), self.min_agent));
                    }
                }
                () = transport::sleep_until(idle_deadline), if idle_deadline.is_some() => {
                    tracing::debug!(remote = %self.remote, "idle: closing the sessions");
                    // Whatever the source sent before it saw the close is still served.
                    self.source.close();
                    while let Ok(incoming) = self.source.try_recv() {
                        queue.push_back(incoming);
                    }
                    source_open = false;
                }
                _ = shutdown.changed() => break,
            }
            // Every link ended and nothing is queued: the next connection opens a new one.
            links.retain(LinkHandle::is_alive);
            if links.is_empty() && opens.is_empty() && !queue.is_empty() {
                opens.spawn(open(self.connector.clone(), self.min_agent));
            }
        }
        opens.abort_all();
        if restart.pending {
            self.traffic.restart_ends(false);
        }
        self.source.close();
        drop(links);
        while tasks.join_next().await.is_some() {}
    }
}

/// `auto`'s bookkeeping, once per turn of the pool: samples each link's delivery rate every
/// [`AUTO_SAMPLE_EVERY`] while any carries connections, ends extra sessions idle for
/// [`AUTO_IDLE_CLOSE`] (keeping one), and returns when to look again (next sample, next idle
/// close).
fn adapt(
    links: &mut Vec<LinkHandle>,
    last_sample: &mut Instant,
) -> (Option<Instant>, Option<Instant>) {
    let now = transport::now();
    let elapsed = now.saturating_duration_since(*last_sample);
    if elapsed >= AUTO_SAMPLE_EVERY {
        for link in links.iter_mut() {
            let delivered = link.delivered.load(Ordering::Relaxed);
            link.rate = delivered.saturating_sub(link.sampled) as f64 / elapsed.as_secs_f64();
            link.sampled = delivered;
            let stalled = link.is_stalled() && link.rate < AUTO_SATURATED_RATE;
            if stalled && !link.stall_noted {
                tracing::debug!(
                    "a session waits for a local client that does not read; new connections \
                     go to other sessions"
                );
            }
            link.stall_noted = stalled;
        }
        *last_sample = now;
    }
    for link in links.iter_mut() {
        if link.load() > 0 {
            link.idle_since = None;
        } else if link.idle_since.is_none() {
            link.idle_since = Some(now);
        }
    }
    // The oldest sessions stay; extra ones idle long enough end (dropping the handle ends
    // the session politely).
    let mut kept = 0;
    links.retain(|link| {
        let expired = link
            .idle_since
            .is_some_and(|t| now.saturating_duration_since(t) >= AUTO_IDLE_CLOSE);
        let keep = kept == 0 || !expired;
        if keep {
            kept += 1;
        } else {
            tracing::debug!("closing an extra idle session");
        }
        keep
    });
    let busy = links.iter().any(|l| l.load() > 0);
    let sample_at = busy.then(|| *last_sample + AUTO_SAMPLE_EVERY);
    let idle_at = links
        .iter()
        .skip(1)
        .filter_map(|l| l.idle_since)
        .min()
        .map(|t| t + AUTO_IDLE_CLOSE);
    (sample_at, idle_at)
}

/// A keep-warm pool's restarts: when the next attempt is due, how many failed in a row.
#[derive(Debug, Default)]
struct Restart {
    /// When to start the next session.
    at: Option<Instant>,
    /// Failed attempts since the last session was up.
    attempts: u32,
    /// Counted in [`Traffic`] as restarting.
    pending: bool,
}

impl Restart {
    /// Every session ended: schedule the next attempt (the first at once).
    fn schedule(&mut self, traffic: &Traffic) {
        if !self.pending {
            self.pending = true;
            traffic.restart_begins();
        }
        self.at = Some(transport::now() + restart_delay(self.attempts, rand::random()));
    }

    /// A session is up.
    fn succeeded(&mut self, traffic: &Traffic) {
        self.attempts = 0;
        if self.pending {
            self.pending = false;
            traffic.restart_ends(true);
        }
    }

    /// A session could not be started; true when the forward can never work (recorded in
    /// `traffic`).
    fn failed(&mut self, error: &ConnectError, traffic: &Traffic) -> bool {
        if !self.pending {
            // The start of an extra session failed; the others still run.
            return false;
        }
        self.attempts += 1;
        let hopeless = refused_for_good(error) || self.attempts >= RESTART_ATTEMPTS;
        if hopeless {
            traffic.failed(crate::report::error_chain(error));
        }
        hopeless
    }
}

/// Whether StartSession refused in a way no retry changes: access denied, or an invalid
/// target or document.
pub(crate) fn refused_for_good(error: &ConnectError) -> bool {
    match error {
        ConnectError::Start(e) => {
            e.kind == AwsErrorKind::AccessDenied
                || matches!(
                    e.code(),
                    Some("InvalidTarget" | "InvalidDocument" | "InvalidInstanceId")
                )
        }
        _ => false,
    }
}

/// The wait before restart attempt `attempts + 1`: none for the first, then doubling from
/// 1 s to [`RESTART_MAX_DELAY`], each scaled by `jitter` (0 to 1) into its upper half.
pub(crate) fn restart_delay(attempts: u32, jitter: f64) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let full = RESTART_FIRST_DELAY
        .saturating_mul(1 << (attempts - 1).min(16))
        .min(RESTART_MAX_DELAY);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Accepts `listener`'s connections into a pool's source until shutdown or the pool is gone.
pub(crate) async fn accept(
    listener: TcpListener,
    local: String,
    into: mpsc::UnboundedSender<Incoming>,
    notices: mpsc::UnboundedSender<Notice>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.accepted();
                    tracing::debug!(%peer, %local, "accepted");
                    let _ = notices.send(Notice::ConnectionAccepted { local: local.clone() });
                    if into.send(Incoming::plain(stream)).is_err() {
                        return;
                    }
                }
                Err(error) => backoff.failed(&error, &local.to_string()).await,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts a session and checks its agent's version against `min_agent` (`feature`, version).
async fn open(
    connector: Connector,
    min_agent: Option<(&'static str, &'static str)>,
) -> Result<Connected, ConnectError> {
    let connected = connector.connect().await?;
    let agent = connected.ready.agent_version.as_deref().unwrap_or_default();
    match min_agent {
        Some((feature, needed)) if !agent_at_least(agent, needed) => {
            let reason = format!(
                "the SSM agent (version {agent}) is too old to {feature}; it needs {needed} or \
                 later"
            );
            connector.terminate(&connected.session_id).await;
            Err(ConnectError::Ended {
                session_id: connected.session_id,
                reason,
            })
        }
        _ => Ok(connected),
    }
}

/// Mux when the session is LocalPortForwarding and the agent is new enough (SPEC.md §6.5).
pub(crate) fn link_mode(connected: &Connected) -> LinkMode {
    let agent = connected.ready.agent_version.as_deref().unwrap_or_default();
    let port_forwarding = connected.ready.properties["type"] == "LocalPortForwarding";
    if port_forwarding && postern_protocol::version::client_uses_mux(agent) {
        LinkMode::Mux
    } else {
        LinkMode::Basic
    }
}

fn start_link(connected: Connected, ctx: &LinkContext, tasks: &mut JoinSet<()>) -> LinkHandle {
    let (conns, receiver) = mpsc::unbounded_channel();
    let load = Arc::new(AtomicUsize::new(0));
    let mode = link_mode(&connected);
    tracing::debug!(session_id = %connected.session_id, ?mode, "link starts");
    let ctx = ctx.clone();
    let link_load = load.clone();
    let delivered = Arc::new(AtomicU64::new(0));
    let link_delivered = delivered.clone();
    let stalled = Arc::new(AtomicBool::new(false));
    let link_stalled = stalled.clone();
    let traffic = ctx.traffic.clone();
    traffic.session_opened();
    tasks.spawn(async move {
        match mode {
            LinkMode::Mux => {
                let gauges = mux_link::Gauges {
                    load: link_load,
                    delivered: link_delivered,
                    stalled: link_stalled,
                };
                mux_link::run(connected, ctx, receiver, gauges).await;
            }
            LinkMode::Basic => basic_link::run(connected, ctx, receiver, link_load).await,
        }
        traffic.session_closed();
    });
    LinkHandle {
        conns,
        load,
        delivered,
        sampled: 0,
        rate: 0.0,
        stalled,
        stall_noted: false,
        assigned_at: None,
        idle_since: None,
    }
}

/// Failed restarts in a row after which a keep-warm forward gives up (about five minutes
/// with [`restart_delay`]).
pub(crate) const RESTART_ATTEMPTS: u32 = 10;
/// The wait before the second restart attempt.
const RESTART_FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between restart attempts.
const RESTART_MAX_DELAY: Duration = Duration::from_secs(60);

/// `--sessions auto`: at most this many sessions per forward. Each session of a current agent
/// is capped near 1 MB/s downstream by the agent's pacing (SPEC.md §10 item 17), so eight give
/// parallel bulk transfers eight times that, while StartSession calls (rate limited per
/// account) and concurrent sessions (visible to administrators, limited per account) stay
/// few; sessions open only as the open ones saturate.
pub const AUTO_MAX_SESSIONS: usize = 8;
/// `--sessions auto`: most connections a mux session takes while it has room.
pub const AUTO_PER_SESSION: usize = 16;
/// `--sessions auto`: a link delivering this many bytes per second is saturated: 60% of the
/// agent's pace of one 1 KiB message per millisecond (SPEC.md §10 item 17), which a busy
/// session stays above even across a slow network.
const AUTO_SATURATED_RATE: f64 = 0.6 * 1024.0 * 1000.0;
/// `--sessions auto`: a link that took a connection this recently counts as saturated (its
/// rate is not known yet), so a burst of parallel transfers spreads over sessions.
const AUTO_PROBE: Duration = Duration::from_millis(500);
/// `--sessions auto`: how often each link's delivery rate is sampled while connections run.
const AUTO_SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// `--sessions auto`: extra sessions that carried nothing this long are closed (one stays).
pub const AUTO_IDLE_CLOSE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED_4_MUX: Policy = Policy {
        max: 4,
        per_session: 1,
        hard: false,
        adaptive: false,
    };

    /// Links carrying these many connections, none saturated.
    fn l(connections: &[usize]) -> Vec<LinkLoad> {
        connections
            .iter()
            .map(|&connections| LinkLoad {
                connections,
                saturated: false,
                stalled: false,
            })
            .collect()
    }

    #[test]
    fn a_stalled_session_takes_no_new_connection_while_another_can() {
        let auto = Policy::new(SessionCount::Auto, LinkMode::Mux);
        let mut links = l(&[1]);
        links[0].stalled = true;
        // Alone and stalled: another session opens for the connection.
        assert_eq!(decide(&links, 0, 1, auto), Decision::Open);
        // Beside a busier session that flows: that one takes it.
        links.push(l(&[5])[0]);
        assert_eq!(decide(&links, 0, 1, auto), Decision::Dispatch(1));
        // At the session limit, the least loaded of those that flow doubles up.
        let mut full = l(&[1; AUTO_MAX_SESSIONS]);
        for link in &mut full {
            link.saturated = true;
        }
        full[0].stalled = true;
        full[0].connections = 0;
        assert_eq!(decide(&full, 0, 1, auto), Decision::Dispatch(1));
        // Every one stalled: the least loaded all the same (the user's limit holds).
        for link in &mut full {
            link.stalled = true;
        }
        assert_eq!(decide(&full, 0, 1, auto), Decision::Dispatch(0));
        let fixed_one = Policy::new(SessionCount::Fixed(1), LinkMode::Mux);
        let mut one = l(&[2]);
        one[0].stalled = true;
        assert_eq!(decide(&one, 0, 1, fixed_one), Decision::Dispatch(0));
    }

    #[test]
    fn an_idle_session_takes_the_connection() {
        assert_eq!(
            decide(&l(&[1, 0]), 0, 1, FIXED_4_MUX),
            Decision::Dispatch(1)
        );
    }

    #[test]
    fn busy_sessions_open_another_up_to_the_limit() {
        assert_eq!(decide(&l(&[1]), 0, 1, FIXED_4_MUX), Decision::Open);
        // One opening already covers one waiting connection.
        assert_eq!(decide(&l(&[1]), 1, 1, FIXED_4_MUX), Decision::Wait);
        assert_eq!(decide(&l(&[1]), 1, 2, FIXED_4_MUX), Decision::Open);
        assert_eq!(
            decide(&l(&[1, 1, 1]), 1, 5, FIXED_4_MUX),
            Decision::Dispatch(0)
        );
    }

    #[test]
    fn at_the_limit_mux_doubles_up_and_basic_waits() {
        assert_eq!(
            decide(&l(&[2, 1, 3, 1]), 0, 1, FIXED_4_MUX),
            Decision::Dispatch(1)
        );
        let basic = Policy::new(SessionCount::Fixed(2), LinkMode::Basic);
        assert_eq!(decide(&l(&[1, 1]), 0, 1, basic), Decision::Wait);
        assert_eq!(decide(&l(&[1, 0]), 0, 1, basic), Decision::Dispatch(1));
    }

    #[test]
    fn auto_shares_a_session_with_room_and_opens_another_when_all_are_saturated() {
        let auto = Policy::new(SessionCount::Auto, LinkMode::Mux);
        // A light session takes more connections, up to its cap.
        assert_eq!(decide(&l(&[3]), 0, 1, auto), Decision::Dispatch(0));
        assert_eq!(decide(&l(&[16]), 0, 1, auto), Decision::Open);
        let busy = LinkLoad {
            connections: 1,
            saturated: true,
            stalled: false,
        };
        assert_eq!(decide(&[busy], 0, 1, auto), Decision::Open);
        let mut links = vec![busy, l(&[2])[0]];
        assert_eq!(decide(&links, 0, 1, auto), Decision::Dispatch(1));
        // Eight saturated sessions: the least loaded doubles up.
        links = vec![busy; AUTO_MAX_SESSIONS];
        links[3].connections = 0;
        links[3].saturated = false;
        assert_eq!(decide(&links, 0, 1, auto), Decision::Dispatch(3));
        links[3] = busy;
        assert_eq!(decide(&links, 0, 1, auto), Decision::Dispatch(0));
    }

    #[test]
    fn auto_spreads_a_burst_over_sessions_being_opened() {
        let auto = Policy::new(SessionCount::Auto, LinkMode::Mux);
        let busy = LinkLoad {
            connections: 1,
            saturated: true,
            stalled: false,
        };
        // Seven more connections arrive at once: one session opens for each.
        for opening in 0..7 {
            assert_eq!(decide(&[busy], opening, 7, auto), Decision::Open);
        }
        assert_eq!(decide(&[busy], 7, 7, auto), Decision::Wait);
    }

    #[test]
    fn link_views_count_recent_or_fast_links_as_saturated() {
        let auto = Policy::new(SessionCount::Auto, LinkMode::Mux);
        let now = transport::now();
        let mut link = LinkHandle {
            conns: mpsc::unbounded_channel().0,
            load: Arc::new(AtomicUsize::new(1)),
            delivered: Arc::new(AtomicU64::new(0)),
            sampled: 0,
            rate: 0.0,
            stalled: Arc::new(AtomicBool::new(false)),
            stall_noted: false,
            assigned_at: Some(now),
            idle_since: None,
        };
        assert!(link.view(now, auto).saturated, "just given a connection");
        let later = now + AUTO_PROBE;
        assert!(!link.view(later, auto).saturated, "slow once probed");
        link.rate = 1_000_000.0;
        assert!(link.view(later, auto).saturated, "near the agent's pace");
        assert!(
            !link.view(later, FIXED_4_MUX).saturated,
            "fixed counts ignore rates"
        );
        link.load.store(0, Ordering::Relaxed);
        assert!(!link.view(later, auto).saturated, "an empty link has room");
    }

    #[test]
    fn restarts_back_off_from_nothing_to_a_minute() {
        assert_eq!(restart_delay(0, 0.7), Duration::ZERO);
        assert_eq!(restart_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(restart_delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(restart_delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(restart_delay(9, 1.0), RESTART_MAX_DELAY);
        assert_eq!(restart_delay(40, 1.0), RESTART_MAX_DELAY);
    }

    #[test]
    fn no_session_at_all_opens_one() {
        assert_eq!(decide(&l(&[]), 0, 1, FIXED_4_MUX), Decision::Open);
        assert_eq!(decide(&l(&[]), 1, 1, FIXED_4_MUX), Decision::Wait);
    }
}
