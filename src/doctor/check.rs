//! One line of `postern doctor`: a named check, its outcome, what was found, and the next step
//! when it failed. The exit code of a run is the documented code of its first failure.

use std::fmt;

use serde::Serialize;

use crate::report::{ErrorKind, exit_codes};
use crate::term::escape_text;

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Needed and fine.
    Pass,
    /// Works, with a limitation worth knowing.
    Warn,
    /// Needed and broken: the target is not reachable until it is fixed.
    Fail,
    /// Not run (not asked for, or an earlier failure makes it meaningless).
    Skip,
}

/// One check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`credentials`, `instance`, …).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, in the user's terms.
    pub detail: String,
    /// The next step, for failures and warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The failure class (decides the exit code).
    #[serde(skip)]
    pub kind: Option<ErrorKind>,
}

impl Check {
    /// A passing check.
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            detail: detail.into(),
            hint: None,
            kind: None,
        }
    }

    /// A warning with its advice.
    pub fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            hint: Some(hint.into()),
            ..Self::pass(name, detail)
        }
    }

    /// A failure of class `kind` with the next step.
    pub fn fail(
        name: &'static str,
        kind: ErrorKind,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Fail,
            hint: Some(hint.into()),
            kind: Some(kind),
            ..Self::pass(name, detail)
        }
    }

    /// A check not run, and why.
    pub fn skip(name: &'static str, why: impl Into<String>) -> Self {
        Self {
            status: Status::Skip,
            ..Self::pass(name, why)
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        // Details quote AWS (instance states, agent versions, key ids, error messages):
        // escaped, so only postern's own text reaches the terminal as is.
        write!(f, "{label}  {}: {}", self.name, escape_text(&self.detail))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n      hint: {}", escape_text(hint))?;
        }
        Ok(())
    }
}

/// The exit code for a run: 0 without failures, else the first failure's code.
pub fn exit_code(checks: &[Check]) -> u8 {
    checks
        .iter()
        .find(|c| c.status == Status::Fail)
        .map_or(exit_codes::SUCCESS, |c| {
            c.kind.map_or(exit_codes::UNEXPECTED, ErrorKind::exit_code)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_status_detail_and_hint() {
        let ok = Check::pass("credentials", "arn:aws:iam::1:user/a");
        assert_eq!(ok.to_string(), "PASS  credentials: arn:aws:iam::1:user/a");
        let bad = Check::fail(
            "instance",
            ErrorKind::TargetNotConnected,
            "i-1 is ConnectionLost",
            "start the agent",
        );
        assert_eq!(
            bad.to_string(),
            "FAIL  instance: i-1 is ConnectionLost\n      hint: start the agent"
        );
    }

    #[test]
    fn text_from_aws_is_shown_escaped() {
        let check = Check::pass("kms", "key alias/\x1b[2Jgone");
        assert_eq!(check.to_string(), "PASS  kms: key alias/\\x1b[2Jgone");
    }

    #[test]
    fn exit_code_is_the_first_failure() {
        let checks = vec![
            Check::pass("a", "x"),
            Check::warn("b", "y", "z"),
            Check::fail("c", ErrorKind::AccessDenied, "d", "e"),
            Check::fail("f", ErrorKind::AwsConfig, "g", "h"),
        ];
        assert_eq!(exit_code(&checks), exit_codes::ACCESS_DENIED);
        assert_eq!(exit_code(&checks[..2]), 0);
    }
}
