//! SSM operations of the control plane (JSON 1.1): `StartSession`, `ResumeSession` and
//! `TerminateSession` (SPEC.md §1). Part 2 adds `DescribeInstanceInformation` here.
//!
//! StartSession validates the target and document, creates the registry entry and spawns the
//! session's task; the task itself waits for the websocket.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::awserror::AwsError;
use crate::emulator::documents;
use crate::emulator::driver;
use crate::emulator::server::Shared;

/// Runs one SSM operation.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    match operation {
        "StartSession" => start_session(shared, parse(body)?),
        "ResumeSession" => resume_session(shared, parse(body)?),
        "TerminateSession" => terminate_session(shared, parse(body)?),
        other => Err(AwsError::unknown_operation(&format!("AmazonSSM.{other}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionRequest {
    target: Option<String>,
    document_name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdRequest {
    session_id: Option<String>,
}

fn start_session(shared: &Arc<Shared>, request: StartSessionRequest) -> Result<Value, AwsError> {
    if let Some(code) = &shared.config.faults.fail_start_session {
        return Err(AwsError::new(code, injected_message(code)));
    }
    let target = request.target.ok_or_else(|| {
        validation("Value null at 'target' failed to satisfy constraint: Member must not be null")
    })?;
    let Some(instance) = shared.instances.get(&target) else {
        return Err(AwsError::new(
            "TargetNotConnected",
            format!("{target} is not connected."),
        ));
    };
    let plan = documents::resolve(
        request.document_name.as_deref(),
        &request.parameters,
        shared.config.ssh_port,
    )
    .map_err(|err| AwsError::new(err.aws_code(), err.to_string()))?;
    let created = shared.registry.create(&target);
    tracing::info!(
        session_id = %created.session_id,
        target = %target,
        document = %plan.document,
        "session started"
    );
    let response = json!({
        "SessionId": created.session_id,
        "TokenValue": created.token.expose(),
        "StreamUrl": shared.stream_url(&created.session_id),
    });
    let task = driver::run(
        Arc::clone(shared),
        driver::SessionSpec {
            session_id: created.session_id,
            instance: instance.clone(),
            plan,
        },
        created.commands,
    );
    shared.spawn_session(task);
    Ok(response)
}

fn resume_session(shared: &Shared, request: SessionIdRequest) -> Result<Value, AwsError> {
    let session_id = required_session_id(request)?;
    let token = shared
        .registry
        .resume(&session_id)
        .map_err(|err| AwsError::new("DoesNotExistException", err.to_string()))?;
    tracing::info!(%session_id, resumable = token.is_some(), "session resume requested");
    Ok(match token {
        Some(token) => json!({
            "SessionId": session_id,
            "TokenValue": token.expose(),
            "StreamUrl": shared.stream_url(&session_id),
        }),
        None => json!({ "SessionId": session_id }),
    })
}

fn terminate_session(shared: &Shared, request: SessionIdRequest) -> Result<Value, AwsError> {
    let session_id = required_session_id(request)?;
    // Terminating an unknown or ended session succeeds, as in SSM.
    if shared.registry.terminate(&session_id).is_ok() {
        tracing::info!(%session_id, "session termination requested");
    }
    Ok(json!({ "SessionId": session_id }))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(body).map_err(|err| AwsError::serialization(err.to_string()))
}

fn required_session_id(request: SessionIdRequest) -> Result<String, AwsError> {
    request
        .session_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            validation(
                "Value null at 'sessionId' failed to satisfy constraint: Member must not be null",
            )
        })
}

fn validation(detail: &str) -> AwsError {
    AwsError::new(
        "ValidationException",
        format!("1 validation error detected: {detail}"),
    )
}

/// The message AWS gives for the common codes, so injected failures read like real ones.
fn injected_message(code: &str) -> String {
    match code {
        "TargetNotConnected" => "the target is not connected.".to_owned(),
        "AccessDeniedException" => "User is not authorized to perform: ssm:StartSession on resource because no identity-based policy allows the ssm:StartSession action".to_owned(),
        "InvalidDocument" => "Document does not exist.".to_owned(),
        "ThrottlingException" => "Rate exceeded".to_owned(),
        other => format!("{other} (injected by the emulator)"),
    }
}
