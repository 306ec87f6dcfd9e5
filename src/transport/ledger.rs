//! The sessions this process started and has not ended, and the StartSession calls still
//! waiting for an answer: what [`end_unfinished`] ends when a command stops half-way (Ctrl-C
//! while a forward's sessions start, a pool shut down while it opens one, a supervisor that
//! gives up). Without it such a session stays open at the service until its idle timeout,
//! visible in the console and the audit log as someone still connected.
//!
//! One ledger per process: a session is a process-wide resource, started by whichever task
//! and ended by whichever other.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::aws::SsmClient;

struct Ledger {
    /// StartSession calls sent and not answered.
    in_flight: usize,
    /// Started sessions, by id, with the client that can end them.
    open: BTreeMap<String, SsmClient>,
}

static LEDGER: Mutex<Ledger> = Mutex::new(Ledger {
    in_flight: 0,
    open: BTreeMap::new(),
});

/// Woken whenever a StartSession call is answered.
static ANSWERED: Notify = Notify::const_new();

fn ledger() -> MutexGuard<'static, Ledger> {
    // Nothing panics while holding the lock; a poisoned one still holds valid entries.
    LEDGER.lock().unwrap_or_else(|p| p.into_inner())
}

/// One StartSession call on its way: counted until [`InFlight::answered`] or its drop.
#[must_use = "the call stays counted until answered"]
pub struct InFlight {
    ssm: SsmClient,
    answered: bool,
}

/// Counts a StartSession call about to be sent with `ssm`.
pub fn starting(ssm: &SsmClient) -> InFlight {
    ledger().in_flight += 1;
    InFlight {
        ssm: ssm.clone(),
        answered: false,
    }
}

impl InFlight {
    /// The call was answered; `session_id` when it started a session.
    pub fn answered(mut self, session_id: Option<&str>) {
        self.settle(session_id);
    }

    fn settle(&mut self, session_id: Option<&str>) {
        if self.answered {
            return;
        }
        self.answered = true;
        {
            let mut ledger = ledger();
            ledger.in_flight -= 1;
            if let Some(id) = session_id {
                ledger.open.insert(id.to_owned(), self.ssm.clone());
            }
        }
        ANSWERED.notify_waiters();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A call abandoned without an answer (its task cancelled at shutdown).
        self.settle(None);
    }
}

/// `session_id` has ended (TerminateSession called, or the agent closed it): nothing to do for
/// it any more.
pub fn ended(session_id: &str) {
    ledger().open.remove(session_id);
}

/// Waits up to `grace` for unanswered StartSession calls, then calls TerminateSession for
/// every session still in the ledger. Returns how many it ended.
pub async fn end_unfinished(grace: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let answered = ANSWERED.notified();
        tokio::pin!(answered);
        // Registered before the check: an answer between the two is not missed.
        answered.as_mut().enable();
        let in_flight = ledger().in_flight;
        if in_flight == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, answered).await.is_err() {
            tracing::warn!(
                calls = in_flight,
                "StartSession not answered in {grace:?}: a session it started may stay open \
                 until the service's idle timeout"
            );
            break;
        }
    }
    let leftovers = std::mem::take(&mut ledger().open);
    if leftovers.is_empty() {
        return 0;
    }
    tracing::info!(
        sessions = leftovers.len(),
        "ending the sessions a stopped command left open"
    );
    join_all(
        leftovers
            .iter()
            .map(|(id, ssm)| super::lifecycle::terminate(ssm, id)),
    )
    .await;
    leftovers.len()
}
