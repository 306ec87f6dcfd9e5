//! What became of each instance, and the summary on stderr at the end: how many succeeded,
//! failed or could not start (the failed ones listed), and the exit status of the whole run.

use std::time::Duration;

use crate::report::exit_codes;

/// One instance's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The instance id.
    pub(crate) id: String,
    /// Its Name tag (may be empty), as AWS gave it: escaped where shown.
    pub(crate) name: String,
    /// Its account id.
    pub(crate) account: String,
    /// Its account alias.
    pub(crate) alias: String,
    /// Its region.
    pub(crate) region: String,
    /// What happened.
    pub(crate) status: Status,
    /// From the start of its turn to its end.
    pub(crate) duration: Duration,
}

/// What happened on one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// The command ran and exited with this status.
    Exited(i32),
    /// The command started, but its session broke before it reported a status.
    Failed(String),
    /// No session, or the command never began (offline, StartSession refused, no data channel,
    /// no handshake).
    NotStarted(String),
    /// Ctrl-C (or SIGTERM) ended the run first; its session, if any, was terminated.
    Interrupted,
}

impl Status {
    /// `succeeded`, `failed`, `not_started` or `interrupted`, as `--json` writes it.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Self::Exited(0) => "succeeded",
            Self::Exited(_) | Self::Failed(_) => "failed",
            Self::NotStarted(_) => "not_started",
            Self::Interrupted => "interrupted",
        }
    }

    /// The error text, for what did not end with an exit status.
    pub(crate) fn error(&self) -> Option<&str> {
        match self {
            Self::Failed(e) | Self::NotStarted(e) => Some(e),
            Self::Exited(_) => None,
            Self::Interrupted => Some("interrupted"),
        }
    }

    /// The status the history records for this instance's session: the command's own, else the
    /// code `postern exec` would have exited with.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            // Exit statuses are 0-255 on Unix; the agent's ExitCode may carry -1.
            Self::Exited(s) => s.rem_euclid(256) as u8,
            Self::Failed(_) => exit_codes::NO_EXIT_STATUS,
            Self::NotStarted(_) => exit_codes::SOME_NOT_STARTED,
            Self::Interrupted => exit_codes::for_signal(libc::SIGINT),
        }
    }
}

/// The tally of a run, kept small: counts, and one line per instance that did not succeed.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    total: usize,
    succeeded: usize,
    failed: Vec<String>,
    not_started: Vec<String>,
    interrupted: usize,
    /// Instances never tried because the run was interrupted.
    pub(crate) not_run: usize,
}

impl Summary {
    /// A summary of a run over `total` instances.
    pub(crate) fn new(total: usize) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }

    /// Counts `outcome`.
    pub(crate) fn record(&mut self, outcome: &Outcome) {
        let who = describe(outcome);
        match &outcome.status {
            Status::Exited(0) => self.succeeded += 1,
            Status::Exited(s) => self.failed.push(format!("{who}: exit status {s}")),
            Status::Failed(e) => self.failed.push(format!("{who}: {e}")),
            Status::NotStarted(e) => self.not_started.push(format!("{who}: {e}")),
            Status::Interrupted => self.interrupted += 1,
        }
    }

    /// A task that could not report its instance (a bug): counted as failed.
    pub(crate) fn record_lost(&mut self, why: &str) {
        self.failed
            .push(format!("an instance's task ended abnormally: {why}"));
    }

    /// The summary text (unescaped: [`crate::report::notice`] escapes it).
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "exec on {} instance{}: {} succeeded, {} failed, {} could not start",
            self.total,
            plural(self.total),
            self.succeeded,
            self.failed.len(),
            self.not_started.len()
        );
        if self.interrupted > 0 || self.not_run > 0 {
            out.push_str(&format!(
                "; interrupted: {} terminated, {} not run",
                self.interrupted, self.not_run
            ));
        }
        for (title, lines) in [
            ("failed", &self.failed),
            ("could not start", &self.not_started),
        ] {
            if lines.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{title}:"));
            for line in lines {
                out.push_str("\n  ");
                out.push_str(line);
            }
        }
        out
    }

    /// The run's exit status: 0 when every instance ran and exited 0; 128+N when signal N
    /// interrupted it; [`exit_codes::SOME_NOT_STARTED`] when some could not start (whatever the
    /// others did), else [`exit_codes::SOME_FAILED`] when some failed.
    pub(crate) fn exit_code(&self, signal: Option<i32>) -> u8 {
        if let Some(signal) = signal {
            exit_codes::for_signal(signal)
        } else if !self.not_started.is_empty() {
            exit_codes::SOME_NOT_STARTED
        } else if !self.failed.is_empty() {
            exit_codes::SOME_FAILED
        } else {
            exit_codes::SUCCESS
        }
    }
}

/// "web-1 (i-0123…, acme-dev, eu-west-1)".
fn describe(outcome: &Outcome) -> String {
    if outcome.name.is_empty() {
        format!("{} ({}, {})", outcome.id, outcome.alias, outcome.region)
    } else {
        format!(
            "{} ({}, {}, {})",
            outcome.name, outcome.id, outcome.alias, outcome.region
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, status: Status) -> Outcome {
        Outcome {
            id: format!("i-{name}"),
            name: name.to_owned(),
            account: "318402957716".to_owned(),
            alias: "acme-dev".to_owned(),
            region: "eu-west-1".to_owned(),
            status,
            duration: Duration::from_millis(5),
        }
    }

    #[test]
    fn lists_failed_and_unstarted_instances_and_picks_the_exit_code() {
        let mut summary = Summary::new(4);
        summary.record(&outcome("a", Status::Exited(0)));
        summary.record(&outcome("b", Status::Exited(3)));
        assert_eq!(summary.exit_code(None), exit_codes::SOME_FAILED);
        summary.record(&outcome("c", Status::NotStarted("not online".to_owned())));
        summary.record(&outcome(
            "d",
            Status::Failed("the connection was lost".to_owned()),
        ));
        assert_eq!(
            summary.render(),
            "exec on 4 instances: 1 succeeded, 2 failed, 1 could not start\n\
             failed:\n  b (i-b, acme-dev, eu-west-1): exit status 3\n  \
             d (i-d, acme-dev, eu-west-1): the connection was lost\n\
             could not start:\n  c (i-c, acme-dev, eu-west-1): not online"
        );
        assert_eq!(summary.exit_code(None), exit_codes::SOME_NOT_STARTED);
        assert_eq!(summary.exit_code(Some(libc::SIGINT)), 130);
    }

    #[test]
    fn all_succeeded_is_zero_and_interruptions_are_counted() {
        let mut summary = Summary::new(3);
        summary.record(&outcome("a", Status::Exited(0)));
        assert_eq!(summary.exit_code(None), 0);
        summary.record(&outcome("b", Status::Interrupted));
        summary.not_run = 1;
        assert_eq!(
            summary.render(),
            "exec on 3 instances: 1 succeeded, 0 failed, 0 could not start; interrupted: 1 \
             terminated, 1 not run"
        );
    }

    #[test]
    fn statuses_have_json_words_and_history_codes() {
        assert_eq!(Status::Exited(0).word(), "succeeded");
        assert_eq!(Status::Exited(-1).exit_code(), 255);
        assert_eq!(Status::Failed(String::new()).word(), "failed");
        assert_eq!(Status::NotStarted(String::new()).word(), "not_started");
        assert_eq!(Status::Interrupted.error(), Some("interrupted"));
    }
}
