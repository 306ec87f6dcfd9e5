//! What a SOCKS client is told when its CONNECT fails, and the reason postern prints: the
//! most fitting RFC 1928 reply code for each way a destination can be out of reach through
//! Session Manager.
//!
//! Pure: no IO.

use crate::aws::AwsErrorKind;
use crate::forward::ConnectError;
use crate::forward::link::Outcome;
use crate::forward::socks::codec::Reply;

/// The reply for `outcome`, with the reason to print when it is a failure.
pub(crate) fn reply_for(outcome: &Outcome<'_>) -> (Reply, Option<String>) {
    match outcome {
        Outcome::Connected => (Reply::Succeeded, None),
        // The flag carries no reason: a closed port, a name the instance cannot resolve, a
        // route or security group in the way all look alike (agent `port_mux.go`).
        Outcome::ConnectToPortError { session_id } => (
            Reply::HostUnreachable,
            Some(format!(
                "the instance could not connect to it (ConnectToPortError, session \
                 {session_id}): nothing listens there, the name does not resolve on the \
                 instance, or the network blocks it"
            )),
        ),
        Outcome::SessionEnded(reason) => {
            (ended(reason), Some(format!("the session ended: {reason}")))
        }
        Outcome::NoSession(error) => {
            let reply = match error {
                ConnectError::Start(aws) => match aws.kind {
                    AwsErrorKind::AccessDenied => Reply::NotAllowed,
                    AwsErrorKind::TargetNotConnected => Reply::NetworkUnreachable,
                    _ => Reply::GeneralFailure,
                },
                ConnectError::Ended { reason, .. } => ended(reason),
                _ => Reply::GeneralFailure,
            };
            let reason = format!(
                "no session could be started: {}",
                crate::report::error_chain(*error)
            );
            (reply, Some(reason))
        }
    }
}

/// The reply for a session the agent ended with `reason`.
fn ended(reason: &str) -> Reply {
    if reason.contains(FORBIDDEN) {
        Reply::NotAllowed
    } else if reason.contains(BASIC_DIAL_FAILED) || reason.contains("connection refused") {
        Reply::ConnectionRefused
    } else {
        Reply::GeneralFailure
    }
}

/// The agent refuses destinations that resolve to the instance metadata service, the VPC DNS
/// resolver and similar addresses with "Forwarding to IP address HOST is forbidden." (agent
/// `agent/session/plugins/port/port.go`, `validateParameters`).
const FORBIDDEN: &str = "is forbidden";
/// A basic-mode session whose first dial fails ends with "Unable to connect to specified
/// port: …" (agent `agent/session/plugins/port/port_basic.go`, `InitializeSession`).
const BASIC_DIAL_FAILED: &str = "Unable to connect to specified port";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;

    #[test]
    fn connected_is_success_without_a_reason() {
        assert_eq!(reply_for(&Outcome::Connected), (Reply::Succeeded, None));
    }

    #[test]
    fn agent_refusals_map_to_fitting_codes() {
        let (reply, reason) = reply_for(&Outcome::ConnectToPortError { session_id: "s-1" });
        assert_eq!(reply, Reply::HostUnreachable);
        assert!(reason.unwrap().contains("ConnectToPortError, session s-1"));
        let forbidden = "Forwarding to IP address 169.254.169.254 is forbidden.";
        assert_eq!(
            reply_for(&Outcome::SessionEnded(forbidden)).0,
            Reply::NotAllowed
        );
        assert_eq!(
            reply_for(&Outcome::SessionEnded(
                "Unable to connect to specified port: dial tcp 10.0.0.5:80: connect: connection \
                 refused"
            ))
            .0,
            Reply::ConnectionRefused
        );
        assert_eq!(
            reply_for(&Outcome::SessionEnded("postern is stopping")).0,
            Reply::GeneralFailure
        );
    }

    #[test]
    fn start_session_failures_map_by_kind() {
        for (kind, expected) in [
            (AwsErrorKind::AccessDenied, Reply::NotAllowed),
            (AwsErrorKind::TargetNotConnected, Reply::NetworkUnreachable),
            (AwsErrorKind::Service, Reply::GeneralFailure),
        ] {
            let error = ConnectError::Start(AwsError::local(
                kind,
                "StartSession",
                Some("eu-west-1".to_owned()),
                None,
                "refused",
            ));
            let (reply, reason) = reply_for(&Outcome::NoSession(&error));
            assert_eq!(reply, expected, "{kind:?}");
            assert!(reason.unwrap().starts_with("no session could be started: "));
        }
    }
}
