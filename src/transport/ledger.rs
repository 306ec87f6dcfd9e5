//! The sessions this process started (or adopted: the AWS CLI's, in plugin mode) and has not
//! ended, and the StartSession calls still waiting for an answer: what [`end_unfinished`] ends
//! when a command stops half-way (Ctrl-C while a forward's sessions start or end, a pool shut
//! down while it opens one, a supervisor that gives up; [`end_left_by`] for one tunnel of
//! many). Without it such a session stays open at the service until its idle timeout,
//! visible in the console and the audit log as someone still connected.
//!
//! One ledger per process: a session is a process-wide resource, started by whichever task
//! and ended by whichever other. It makes no AWS call of its own but TerminateSession, and it
//! never ends a session someone still owns: only what a stopped command or a starter that
//! gave up leaves behind.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::aws::SsmClient;

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

    /// The call started a session its caller no longer waits for: counted as being ended
    /// until the returned [`Ending`] is dropped (after TerminateSession).
    pub fn answered_abandoned(mut self) -> Ending {
        self.answered = true;
        {
            let mut ledger = ledger();
            ledger.in_flight -= 1;
            ledger.ending += 1;
        }
        ANSWERED.notify_waiters();
        Ending(())
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

/// `session_id`, started by someone else and handed to this process to run and end (the AWS
/// CLI's session in `session-manager-plugin` mode): listed as if this process had started it,
/// so that a command stopped half-way ends it too.
pub fn adopted(ssm: &SsmClient, session_id: &str) {
    ledger().open.insert(session_id.to_owned(), ssm.clone());
}

/// `session_id` has ended (TerminateSession called, or the agent closed it): nothing to do for
/// it any more.
pub fn ended(session_id: &str) {
    ledger().open.remove(session_id);
}

/// An abandoned session (its starter gave up before it was its own) being ended: counted
/// until dropped, after its TerminateSession (or that call's cancellation), and then in what
/// [`end_unfinished`] reports, which waits for it.
#[must_use = "the session counts as being ended until this is dropped"]
pub struct Ending(());

impl Drop for Ending {
    fn drop(&mut self) {
        {
            let mut ledger = ledger();
            ledger.ending -= 1;
            ledger.abandoned += 1;
        }
        ANSWERED.notify_waiters();
    }
}

/// Takes `session_id`, which its starter abandoned, out of the sessions to sweep at once and
/// counts it as being ended; None when it is no longer listed (the exit sweep, or its own end,
/// has it already): then it must not be ended, nor counted, a second time.
pub fn abandon(session_id: &str) -> Option<Ending> {
    let mut ledger = ledger();
    ledger.open.remove(session_id)?;
    ledger.ending += 1;
    Some(Ending(()))
}

/// Ends `session_id`, which the sweep took from the listed sessions, through `ssm`.
async fn end_left_open(ssm: &SsmClient, session_id: &str) {
    let _ending = {
        ledger().ending += 1;
        Ending(())
    };
    super::lifecycle::terminate(ssm, session_id).await;
}

/// The ids of the sessions [`end_unfinished`] would end now: started, neither ended nor being
/// ended.
pub fn open_session_ids() -> Vec<String> {
    ledger().open.keys().cloned().collect()
}

/// Ends the listed sessions started through a clone of `ssm` (see [`SsmClient::is_clone_of`]):
/// what one stopped part of a long-lived process (a tunnel of `up`'s supervisor, cut short)
/// left open, while the sessions of the other parts stay. Returns how many it ended.
pub async fn end_left_by(ssm: &SsmClient) -> usize {
    let leftovers = take_left_by(ssm);
    join_all(leftovers.iter().map(|(id, ssm)| end_left_open(ssm, id))).await;
    // Reported by the caller now: the process's exit sweep must not count them again.
    let mut ledger = ledger();
    ledger.abandoned = ledger.abandoned.saturating_sub(leftovers.len());
    leftovers.len()
}

/// Takes the sessions started through a clone of `ssm` out of the listed ones.
fn take_left_by(ssm: &SsmClient) -> Vec<(String, SsmClient)> {
    let mut ledger = ledger();
    let ids: Vec<String> = ledger
        .open
        .iter()
        .filter(|(_, client)| client.is_clone_of(ssm))
        .map(|(id, _)| id.clone())
        .collect();
    ids.into_iter()
        .filter_map(|id| ledger.open.remove_entry(&id))
        .collect()
}

/// Whether [`end_unfinished`] has anything to wait for or end.
pub fn has_unfinished() -> bool {
    let ledger = ledger();
    ledger.in_flight > 0 || ledger.ending > 0 || !ledger.open.is_empty()
}

/// Waits up to `grace` for unanswered StartSession calls, then calls TerminateSession for
/// every session still in the ledger and waits for abandoned sessions being ended elsewhere
/// (each call is bounded). Returns how many abandoned sessions were ended in all (by their
/// starters' tasks and here).
pub async fn end_unfinished(grace: Duration) -> usize {
    let answered = settled(grace, |ledger| ledger.in_flight == 0).await;
    if !answered {
        tracing::warn!(
            "StartSession not answered in {grace:?}: a session it started may stay open until \
             the service's idle timeout"
        );
    }
    let leftovers = std::mem::take(&mut ledger().open);
    if !leftovers.is_empty() {
        tracing::info!(
            sessions = leftovers.len(),
            "ending the sessions a stopped command left open"
        );
        join_all(leftovers.iter().map(|(id, ssm)| end_left_open(ssm, id))).await;
    }
    // Ends begun elsewhere finish within their own bound.
    settled(super::lifecycle::TERMINATE_TIMEOUT, |ledger| {
        ledger.ending == 0
    })
    .await;
    ledger().abandoned
}

/// Waits up to `limit` until `done` holds for the ledger; whether it does.
async fn settled(limit: Duration, done: impl Fn(&Ledger) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let changed = ANSWERED.notified();
        tokio::pin!(changed);
        // Registered before the check: a change between the two is not missed.
        changed.as_mut().enable();
        if done(&ledger()) {
            return true;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return false;
        }
    }
}

struct Ledger {
    /// StartSession calls sent and not answered.
    in_flight: usize,
    /// Started sessions, by id, with the client that can end them.
    open: BTreeMap<String, SsmClient>,
    /// Abandoned sessions whose TerminateSession is on its way.
    ending: usize,
    /// Abandoned sessions ended so far.
    abandoned: usize,
}

static LEDGER: Mutex<Ledger> = Mutex::new(Ledger {
    in_flight: 0,
    open: BTreeMap::new(),
    ending: 0,
    abandoned: 0,
});

/// Woken whenever a StartSession call is answered or an abandoned session's end is done.
static ANSWERED: Notify = Notify::const_new();

fn ledger() -> MutexGuard<'static, Ledger> {
    // Nothing panics while holding the lock; a poisoned one still holds valid entries.
    LEDGER.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsContext;

    fn client() -> SsmClient {
        let sdk = aws_types::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_types::region::Region::new("us-east-1"))
            .build();
        SsmClient::new(&AwsContext {
            sdk,
            region: "us-east-1".to_owned(),
            profile: None,
            ssm_endpoint: None,
        })
    }

    #[test]
    fn a_session_is_abandoned_once() {
        starting(&client()).answered(Some("ledger-test-once"));
        assert!(open_session_ids().contains(&"ledger-test-once".to_owned()));
        let ending = abandon("ledger-test-once").expect("listed: its starter ends it");
        assert!(!open_session_ids().contains(&"ledger-test-once".to_owned()));
        // A second guard for the same session (the exit sweep's, another starter's) finds it
        // taken: no second TerminateSession, no second count.
        assert!(abandon("ledger-test-once").is_none());
        drop(ending);
    }

    #[test]
    fn an_adopted_session_is_swept_until_it_ends() {
        adopted(&client(), "ledger-test-adopted");
        assert!(open_session_ids().contains(&"ledger-test-adopted".to_owned()));
        ended("ledger-test-adopted");
        assert!(!open_session_ids().contains(&"ledger-test-adopted".to_owned()));
    }

    #[test]
    fn only_the_sessions_of_one_client_are_taken_for_its_sweep() {
        let tunnel = client();
        let other = client();
        starting(&tunnel).answered(Some("ledger-test-tunnel-a"));
        adopted(&tunnel.clone(), "ledger-test-tunnel-b");
        starting(&other).answered(Some("ledger-test-other"));
        let mut taken: Vec<String> = take_left_by(&tunnel)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        taken.sort();
        assert_eq!(taken, ["ledger-test-tunnel-a", "ledger-test-tunnel-b"]);
        let open = open_session_ids();
        assert!(open.contains(&"ledger-test-other".to_owned()));
        assert!(!open.iter().any(|id| id.starts_with("ledger-test-tunnel")));
        ended("ledger-test-other");
    }

    #[test]
    fn an_ended_session_is_not_abandoned() {
        starting(&client()).answered(Some("ledger-test-ended"));
        ended("ledger-test-ended");
        assert!(abandon("ledger-test-ended").is_none());
    }
}
