//! Writes the audit-trail record of a session command ([`crate::audit_trail`]): started before the
//! session with the plan's facts, it looks the caller's identity up (STS GetCallerIdentity)
//! alongside the session, never before it, and appends the record when the command ends.
//!
//! Failing to learn the identity or to write the file never fails the command: it is logged.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;

use crate::audit_trail::{self, SessionRecord};
use crate::aws::{self, AwsOptions};
use crate::report;

/// What is known of a session command before it runs.
#[derive(Clone, Debug)]
pub(crate) struct AuditStart {
    /// `shell`, `exec`, `forward`, `ssh` or `plugin`.
    pub(crate) kind: &'static str,
    /// The instance.
    pub(crate) target: String,
    /// AWS choices (region, profile, endpoint) for the identity lookup.
    pub(crate) aws: AwsOptions,
    /// The session document, when not the default shell.
    pub(crate) document: Option<String>,
    /// The StartSession reason.
    pub(crate) reason: Option<String>,
}

/// A command being audited.
pub(crate) struct Audit {
    start: AuditStart,
    time: SystemTime,
    clock: Instant,
    lookup: JoinHandle<Lookup>,
}

/// What the identity lookup found.
#[derive(Debug, Default)]
struct Lookup {
    region: Option<String>,
    profile: Option<String>,
    identity: Option<String>,
    account: Option<String>,
}

impl Audit {
    /// Starts auditing; spawns the identity lookup on the current runtime.
    pub(crate) fn begin(start: AuditStart) -> Self {
        let options = start.aws.clone();
        let lookup = tokio::spawn(async move { look_up(&options).await });
        Self {
            start,
            time: SystemTime::now(),
            clock: Instant::now(),
            lookup,
        }
    }

    /// Appends the record for a command that ended with `result`.
    pub(crate) async fn finish(self, result: &anyhow::Result<ExitCode>) {
        let exit_status = match result {
            Ok(code) => exit_status(*code),
            Err(err) => report::code_of(err),
        };
        let duration = self.clock.elapsed();
        let lookup = match tokio::time::timeout(LOOKUP_GRACE, self.lookup).await {
            Ok(Ok(lookup)) => lookup,
            _ => Lookup::default(),
        };
        let record = SessionRecord {
            time: audit_trail::format_time(self.time),
            kind: self.start.kind.to_owned(),
            identity: lookup.identity,
            account: lookup.account,
            region: lookup.region.or(self.start.aws.region.clone()),
            profile: lookup.profile.or(self.start.aws.profile.clone()),
            target: self.start.target,
            document: audit_trail::take_document().or(self.start.document),
            session_ids: audit_trail::take_sessions(),
            reason: self.start.reason,
            duration_ms: audit_trail::millis(duration),
            exit_status,
        };
        let Some(path) = audit_trail::default_path() else {
            tracing::info!("no home directory: the session history is not written");
            return;
        };
        if let Err(error) = audit_trail::append(&path, &record) {
            tracing::info!(%error, path = %path.display(), "could not append to the session history");
        }
    }
}

async fn look_up(options: &AwsOptions) -> Lookup {
    let Ok(context) = aws::load(options).await else {
        return Lookup::default();
    };
    let mut lookup = Lookup {
        region: Some(context.region.clone()),
        profile: context.profile.clone(),
        ..Lookup::default()
    };
    let sts = aws_sdk_sts::Client::new(&context.sdk);
    match tokio::time::timeout(LOOKUP_LIMIT, sts.get_caller_identity().send()).await {
        Ok(Ok(who)) => {
            lookup.identity = who.arn().map(str::to_owned);
            lookup.account = who.account().map(str::to_owned);
        }
        Ok(Err(error)) => tracing::debug!(%error, "GetCallerIdentity failed"),
        Err(_) => tracing::debug!("GetCallerIdentity timed out"),
    }
    lookup
}

/// The number inside an [`ExitCode`]: std offers no getter, but equality with each of the 256
/// possible codes tells it.
fn exit_status(code: ExitCode) -> u8 {
    (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .unwrap_or(report::exit_codes::UNEXPECTED)
}

/// How long the identity lookup may take at all.
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);
/// How long the end of the command waits for a lookup still in flight.
const LOOKUP_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reads_the_code_back() {
        for n in [0u8, 1, 2, 130, 255] {
            assert_eq!(exit_status(ExitCode::from(n)), n);
        }
        assert_eq!(exit_status(ExitCode::SUCCESS), 0);
        assert_eq!(exit_status(ExitCode::FAILURE), 1);
    }
}
