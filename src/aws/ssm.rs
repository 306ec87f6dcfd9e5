//! The three SSM session calls, wrapped so that tokens and stream URLs stay redacted.

use std::collections::HashMap;
use std::fmt;

use crate::aws::config::AwsContext;
use crate::aws::error::{AwsError, AwsErrorKind};

/// SSM client bound to one region and profile.
#[derive(Clone, Debug)]
pub struct SsmClient {
    client: aws_sdk_ssm::Client,
    region: String,
    profile: Option<String>,
    /// Shared by the clones of one client: what [`SsmClient::is_clone_of`] compares.
    identity: std::sync::Arc<()>,
}

/// What to start: the target, and the document with its parameters (none = default shell).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartSessionRequest {
    /// Instance id (`i-…`, `mi-…`) or other SSM target.
    pub target: String,
    /// Session document; `None` gives the default shell.
    pub document_name: Option<String>,
    /// Document parameters; each value is a list of strings.
    pub parameters: HashMap<String, Vec<String>>,
    /// Free-text reason recorded by the service (`--reason`).
    pub reason: Option<String>,
}

/// The data-channel coordinates StartSession or ResumeSession return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCredentials {
    /// The session id, safe to show.
    pub session_id: String,
    /// The token authorising the data channel. Secret.
    pub token: SessionToken,
    /// The websocket URL. Its query is secret.
    pub stream_url: StreamUrl,
}

/// A data-channel token; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

/// A stream URL as returned by the service; `Debug` and `Display` drop the query.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl(String);

impl SsmClient {
    /// A client using `context`'s configuration.
    pub fn new(context: &AwsContext) -> Self {
        Self {
            client: context.ssm_client(),
            region: context.region.clone(),
            profile: context.profile.clone(),
            identity: std::sync::Arc::default(),
        }
    }

    /// Whether `self` and `other` are clones of one client (made by one [`SsmClient::new`]):
    /// what one part of a process (a tunnel of `up`'s supervisor) started its sessions with.
    pub fn is_clone_of(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.identity, &other.identity)
    }

    /// Calls StartSession.
    pub async fn start_session(
        &self,
        request: &StartSessionRequest,
    ) -> Result<SessionCredentials, AwsError> {
        let mut call = self
            .client
            .start_session()
            .target(&request.target)
            .set_document_name(request.document_name.clone())
            .set_reason(request.reason.clone());
        if !request.parameters.is_empty() {
            call = call.set_parameters(Some(request.parameters.clone()));
        }
        crate::setup_memory::between_steps("the SDK's clients");
        let output = call.send().await;
        crate::setup_memory::between_steps("StartSession");
        let output = output.map_err(|err| {
            AwsError::from_sdk("StartSession", &self.region, self.profile.as_deref(), err)
        })?;
        self.credentials(
            "StartSession",
            output.session_id(),
            output.token_value(),
            output.stream_url(),
        )
    }

    /// Calls ResumeSession for a fresh token after the websocket broke; `Ok(None)` when the
    /// service answers without a token: the session can no longer be resumed (SPEC.md §1.3).
    /// Without a StreamUrl in the answer, `stream_url` (the session's first one) is kept, as
    /// the official client always does.
    pub async fn resume_session(
        &self,
        session_id: &str,
        stream_url: &StreamUrl,
    ) -> Result<Option<SessionCredentials>, AwsError> {
        let output = self
            .client
            .resume_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|err| {
                AwsError::from_sdk("ResumeSession", &self.region, self.profile.as_deref(), err)
            })?;
        if output.token_value().is_none_or(str::is_empty) {
            return Ok(None);
        }
        self.credentials(
            "ResumeSession",
            output.session_id().or(Some(session_id)),
            output.token_value(),
            output
                .stream_url()
                .filter(|url| !url.is_empty())
                .or(Some(stream_url.expose())),
        )
        .map(Some)
    }

    /// The SSM agent version instance `instance_id` last reported (DescribeInstanceInformation);
    /// `None` when the instance is not registered or reported none.
    pub async fn agent_version(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let filter = aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(instance_id)
            .build()
            .map_err(|e| {
                AwsError::local(
                    AwsErrorKind::Service,
                    "DescribeInstanceInformation",
                    Some(self.region.clone()),
                    self.profile.clone(),
                    &e.to_string(),
                )
            })?;
        let output = self
            .client
            .describe_instance_information()
            .filters(filter)
            .send()
            .await
            .map_err(|err| {
                AwsError::from_sdk(
                    "DescribeInstanceInformation",
                    &self.region,
                    self.profile.as_deref(),
                    err,
                )
            })?;
        Ok(output
            .instance_information_list()
            .iter()
            .find_map(|i| i.agent_version().map(str::to_owned)))
    }

    /// Calls TerminateSession so nothing stays open on the service.
    pub async fn terminate_session(&self, session_id: &str) -> Result<(), AwsError> {
        self.client
            .terminate_session()
            .session_id(session_id)
            .send()
            .await
            .map_err(|err| {
                AwsError::from_sdk(
                    "TerminateSession",
                    &self.region,
                    self.profile.as_deref(),
                    err,
                )
            })?;
        Ok(())
    }

    /// The region calls go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The profile in use, if named.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    fn credentials(
        &self,
        operation: &'static str,
        session_id: Option<&str>,
        token: Option<&str>,
        stream_url: Option<&str>,
    ) -> Result<SessionCredentials, AwsError> {
        match (session_id, token, stream_url) {
            (Some(id), Some(token), Some(url))
                if !id.is_empty() && !token.is_empty() && !url.is_empty() =>
            {
                Ok(SessionCredentials {
                    session_id: id.to_owned(),
                    token: SessionToken(token.to_owned()),
                    stream_url: StreamUrl(url.to_owned()),
                })
            }
            _ => Err(AwsError::local(
                AwsErrorKind::Service,
                operation,
                Some(self.region.clone()),
                self.profile.clone(),
                "the response lacks a session id, token or stream URL",
            )),
        }
    }
}

impl SessionCredentials {
    /// Credentials from a StartSession response obtained elsewhere (the AWS CLI, in
    /// `session-manager-plugin` mode).
    pub fn from_parts(session_id: String, token: String, stream_url: String) -> Self {
        Self {
            session_id,
            token: SessionToken(token),
            stream_url: StreamUrl(stream_url),
        }
    }
}

impl SessionToken {
    /// The token itself, for the OpenDataChannelInput frame only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl StreamUrl {
    /// The full URL, query included, for dialling only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its query or fragment, safe for messages and logs.
    pub fn redacted(&self) -> &str {
        let end = self.0.find(['?', '#']).unwrap_or(self.0.len());
        &self.0[..end]
    }
}

impl fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamUrl({})", self.redacted())
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_url_display_drops_query() {
        let url = StreamUrl("wss://h/v1/data-channel/s-1?role=publish_subscribe&x=secret".into());
        assert_eq!(url.to_string(), "wss://h/v1/data-channel/s-1");
        assert!(!format!("{url:?}").contains("secret"));
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = SessionToken("tok-secret".into());
        assert!(!format!("{token:?}").contains("tok-secret"));
    }
}
