//! Handshake logic for both roles (SPEC.md §2.7, §4.2–4.5): what the client answers to a
//! HandshakeRequest, what the agent asks and how it judges the answer.
//!
//! Pure functions over payload types; the session sequences them and owns the timers.

use serde_json::Value;

use crate::codec::{
    ActionStatus, ActionType, HandshakeRequest, HandshakeResponse, KmsEncryptionParameters,
    KmsEncryptionResult, ProcessedClientAction, RequestedClientAction, SessionType,
    SessionTypeParameters,
};

/// What a client learned from a HandshakeRequest and still has to do before answering.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientHandshakePlan {
    /// The session type and properties, when a SessionType action was present.
    pub session: Option<SessionTypeParameters>,
    /// The KMS action's parameters, when encryption was requested.
    pub kms: Option<KmsEncryptionParameters>,
    /// Actions in request order, with their status when decidable without KMS.
    actions: Vec<(ActionType, Option<(ActionStatus, String)>)>,
}

impl ClientHandshakePlan {
    /// Reads a request: known session types succeed, unknown ones fail, unknown actions are
    /// Unsupported (status 3, our recommended fix of the official client's bug, SPEC.md §4.3).
    pub fn from_request(request: &HandshakeRequest) -> Self {
        let mut plan = Self {
            session: None,
            kms: None,
            actions: Vec::new(),
        };
        for action in &request.requested_client_actions {
            let outcome = plan.read_action(action);
            plan.actions.push((action.action_type.clone(), outcome));
        }
        plan
    }

    /// Whether the answer waits for a KMS data key.
    pub fn needs_data_key(&self) -> bool {
        self.kms.is_some()
    }

    /// Builds the response; `kms` is the KMS outcome when [`Self::needs_data_key`].
    pub fn response(
        &self,
        client_version: &str,
        kms: Option<Result<KmsEncryptionResult, String>>,
    ) -> HandshakeResponse {
        let mut errors = Vec::new();
        let processed = self
            .actions
            .iter()
            .map(|(action_type, outcome)| {
                let (status, result, error) = match (action_type, outcome) {
                    (_, Some((status, error))) => (*status, Value::Null, error.clone()),
                    (ActionType::KmsEncryption, None) => match &kms {
                        Some(Ok(result)) => (
                            ActionStatus::Success,
                            serde_json::to_value(result).unwrap_or(Value::Null),
                            String::new(),
                        ),
                        Some(Err(e)) => (ActionStatus::Failed, Value::Null, e.clone()),
                        None => (
                            ActionStatus::Failed,
                            Value::Null,
                            "no KMS data key available".to_owned(),
                        ),
                    },
                    (_, None) => (ActionStatus::Success, Value::Null, String::new()),
                };
                if !error.is_empty() {
                    errors.push(error.clone());
                }
                ProcessedClientAction {
                    action_type: action_type.clone(),
                    action_status: status,
                    action_result: result,
                    error,
                }
            })
            .collect();
        HandshakeResponse {
            client_version: client_version.to_owned(),
            processed_client_actions: processed,
            errors: (!errors.is_empty()).then_some(errors),
        }
    }

    fn read_action(&mut self, action: &RequestedClientAction) -> Option<(ActionStatus, String)> {
        match action.action_type {
            ActionType::SessionType => match action.session_type_parameters() {
                Ok(params) if matches!(params.session_type, SessionType::Other(_)) => {
                    let SessionType::Other(name) = &params.session_type else {
                        unreachable!("matched Other above")
                    };
                    Some((
                        ActionStatus::Failed,
                        format!(
                            "Failed to process action SessionType: Unknown session type {name}"
                        ),
                    ))
                }
                Ok(params) => {
                    self.session = Some(params);
                    Some((ActionStatus::Success, String::new()))
                }
                Err(e) => Some((
                    ActionStatus::Failed,
                    format!("Failed to process action SessionType: {e}"),
                )),
            },
            ActionType::KmsEncryption => match action.kms_parameters() {
                Ok(params) => {
                    self.kms = Some(params);
                    None
                }
                Err(e) => Some((
                    ActionStatus::Failed,
                    format!("Failed to process action KMSEncryption: {e}"),
                )),
            },
            ActionType::Other(ref name) => Some((
                ActionStatus::Unsupported,
                format!("Unsupported action {name}"),
            )),
        }
    }
}

/// Builds the agent's HandshakeRequest: SessionType first, then KMSEncryption when configured.
pub fn agent_request(
    agent_version: &str,
    session_type: &SessionType,
    properties: &Value,
    kms: Option<&KmsEncryptionParameters>,
) -> HandshakeRequest {
    let mut actions = vec![RequestedClientAction {
        action_type: ActionType::SessionType,
        action_parameters: serde_json::to_value(SessionTypeParameters {
            session_type: session_type.clone(),
            properties: properties.clone(),
        })
        .unwrap_or(Value::Null),
    }];
    if let Some(kms) = kms {
        actions.push(RequestedClientAction {
            action_type: ActionType::KmsEncryption,
            action_parameters: serde_json::to_value(kms).unwrap_or(Value::Null),
        });
    }
    HandshakeRequest {
        agent_version: agent_version.to_owned(),
        requested_client_actions: actions,
    }
}

/// Why the agent rejects a HandshakeResponse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseRejection {
    /// Not one entry per requested action in the same order.
    #[error("expected {expected} processed actions in request order, got {received}")]
    ActionMismatch {
        /// Requested.
        expected: usize,
        /// Answered.
        received: usize,
    },
    /// An action did not succeed: the real agent cancels the session.
    #[error("client reported action {action} as {status:?}: {error}")]
    ActionFailed {
        /// Which action.
        action: String,
        /// Its status.
        status: ActionStatus,
        /// The client's error text.
        error: String,
    },
    /// The KMS result is missing or malformed.
    #[error("malformed KMSEncryption result: {0}")]
    BadKmsResult(String),
}

/// Checks a response against the request (agent `datachannel.go` `handleHandshakeResponse`) and
/// returns the KMS result when encryption was requested.
pub fn agent_check_response(
    request: &HandshakeRequest,
    response: &HandshakeResponse,
) -> Result<Option<KmsEncryptionResult>, ResponseRejection> {
    let requested = &request.requested_client_actions;
    let processed = &response.processed_client_actions;
    if requested.len() != processed.len()
        || requested
            .iter()
            .zip(processed)
            .any(|(r, p)| r.action_type != p.action_type)
    {
        return Err(ResponseRejection::ActionMismatch {
            expected: requested.len(),
            received: processed.len(),
        });
    }
    let mut kms = None;
    for action in processed {
        if action.action_status != ActionStatus::Success {
            return Err(ResponseRejection::ActionFailed {
                action: String::from(action.action_type.clone()),
                status: action.action_status,
                error: action.error.clone(),
            });
        }
        if action.action_type == ActionType::KmsEncryption {
            let result: KmsEncryptionResult = serde_json::from_value(action.action_result.clone())
                .map_err(|e| ResponseRejection::BadKmsResult(e.to_string()))?;
            kms = Some(result);
        }
    }
    Ok(kms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(actions: Value) -> HandshakeRequest {
        serde_json::from_value(json!({"AgentVersion":"3.3.0.0","RequestedClientActions":actions}))
            .expect("valid request")
    }

    #[test]
    fn port_request_gets_one_success() {
        let req = request(
            json!([{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]),
        );
        let plan = ClientHandshakePlan::from_request(&req);
        assert!(!plan.needs_data_key());
        let resp = plan.response("1.2.707.0", None);
        assert_eq!(
            serde_json::to_string(&resp).expect("serializes"),
            r#"{"ClientVersion":"1.2.707.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
        assert_eq!(agent_check_response(&req, &resp), Ok(None));
    }

    #[test]
    fn unknown_action_is_unsupported_and_agent_rejects_it() {
        let req = request(
            json!([{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"SomeFutureAction","ActionParameters":{}}]),
        );
        let resp = ClientHandshakePlan::from_request(&req).response("1.2.707.0", None);
        assert_eq!(
            resp.processed_client_actions[1].action_status,
            ActionStatus::Unsupported
        );
        assert_eq!(
            resp.errors,
            Some(vec!["Unsupported action SomeFutureAction".to_owned()])
        );
        assert!(matches!(
            agent_check_response(&req, &resp),
            Err(ResponseRejection::ActionFailed { .. })
        ));
    }

    #[test]
    fn unknown_session_type_fails_with_upstream_wording() {
        let req = request(
            json!([{"ActionType":"SessionType","ActionParameters":{"SessionType":"Quantum","Properties":null}}]),
        );
        let resp = ClientHandshakePlan::from_request(&req).response("1.2.707.0", None);
        assert_eq!(
            resp.processed_client_actions[0].error,
            "Failed to process action SessionType: Unknown session type Quantum"
        );
    }

    #[test]
    fn agent_rejects_reordered_actions() {
        let req = agent_request("3.3.0.0", &SessionType::Port, &json!({}), None);
        let resp = HandshakeResponse {
            client_version: "1.2.707.0".into(),
            processed_client_actions: vec![],
            errors: None,
        };
        assert_eq!(
            agent_check_response(&req, &resp),
            Err(ResponseRejection::ActionMismatch {
                expected: 1,
                received: 0
            })
        );
    }
}
