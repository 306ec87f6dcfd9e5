//! The SSM document store: `Session` documents created by an account, per account and region,
//! with their versions (CreateDocument, UpdateDocument, UpdateDocumentDefaultVersion,
//! DescribeDocument, GetDocument), as SSM keeps them. StartSession runs a stored document's
//! default version ([`crate::documents::resolve_custom`]); the AWS-owned documents stay built in
//! ([`crate::documents`]) and are not listed here.
//!
//! Only JSON content is parsed (the emulator has no YAML parser): YAML is refused with
//! `InvalidDocumentContent`, saying so.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::awserror::AwsError;
use crate::control::Caller;

/// Every account's documents, keyed by account, region and name.
#[derive(Debug, Default)]
pub(crate) struct DocumentStore {
    documents: Mutex<HashMap<Key, Stored>>,
}

type Key = (String, String, String);

#[derive(Clone, Debug)]
struct Stored {
    name: String,
    owner: String,
    document_type: String,
    format: String,
    /// Version `n` is `versions[n - 1]`.
    versions: Vec<Version>,
    default_version: usize,
}

#[derive(Clone, Debug)]
struct Version {
    content: String,
    created: f64,
}

impl DocumentStore {
    /// Runs one document operation; `None` when `operation` is not one of them.
    pub(crate) fn handle(
        &self,
        caller: &Caller,
        operation: &str,
        body: &[u8],
    ) -> Option<Result<Value, AwsError>> {
        let result = match operation {
            "CreateDocument" => parse(body).and_then(|r| self.create(caller, r)),
            "UpdateDocument" => parse(body).and_then(|r| self.update(caller, r)),
            "UpdateDocumentDefaultVersion" => {
                parse(body).and_then(|r| self.set_default(caller, &r))
            }
            "DescribeDocument" => parse(body).and_then(|r| self.describe(caller, &r)),
            "GetDocument" => parse(body).and_then(|r| self.get(caller, &r)),
            _ => return None,
        };
        Some(result)
    }

    /// The content of `name`'s default version in the caller's account and region.
    pub(crate) fn default_content(&self, caller: &Caller, name: &str) -> Option<String> {
        let documents = self.lock();
        let stored = documents.get(&key(caller, name))?;
        Some(stored.versions[stored.default_version - 1].content.clone())
    }

    fn create(&self, caller: &Caller, request: CreateRequest) -> Result<Value, AwsError> {
        let name = required(request.name, "name")?;
        check_name(&name)?;
        let content = required(request.content, "content")?;
        let document_type = request
            .document_type
            .unwrap_or_else(|| "Command".to_owned());
        let format = request.document_format.unwrap_or_else(|| "JSON".to_owned());
        check_content(&document_type, &format, &content)?;
        let mut documents = self.lock();
        let key = key(caller, &name);
        if documents.contains_key(&key) {
            return Err(AwsError::new(
                "DocumentAlreadyExists",
                "The specified document already exists.",
            ));
        }
        let stored = Stored {
            name: name.clone(),
            owner: caller.principal.account.clone(),
            document_type,
            format,
            versions: vec![Version {
                content,
                created: now(),
            }],
            default_version: 1,
        };
        let description = stored.description(1);
        tracing::info!(%name, account = %stored.owner, region = %caller.region, "document created");
        documents.insert(key, stored);
        Ok(json!({ "DocumentDescription": description }))
    }

    fn update(&self, caller: &Caller, request: UpdateRequest) -> Result<Value, AwsError> {
        let name = required(request.name, "name")?;
        let content = required(request.content, "content")?;
        let mut documents = self.lock();
        let stored = documents
            .get_mut(&key(caller, &name))
            .ok_or_else(|| invalid_document(&name))?;
        let latest = stored.versions.len();
        match request.document_version.as_deref() {
            None | Some("$LATEST") => {}
            Some(v) if v == latest.to_string() => {}
            Some(v) => {
                return Err(AwsError::new(
                    "InvalidDocumentVersion",
                    format!(
                        "The document version is not valid or does not exist: only the latest \
                         version ({latest}) can be updated, not {v}."
                    ),
                ));
            }
        }
        let format = request
            .document_format
            .unwrap_or_else(|| stored.format.clone());
        check_content(&stored.document_type, &format, &content)?;
        if stored.versions[latest - 1].content == content {
            return Err(AwsError::new(
                "DuplicateDocumentContent",
                "The content of the association document matches another document. Change the \
                 content of the document and try again.",
            ));
        }
        stored.format = format;
        stored.versions.push(Version {
            content,
            created: now(),
        });
        tracing::info!(%name, version = latest + 1, "document updated");
        Ok(json!({ "DocumentDescription": stored.description(latest + 1) }))
    }

    fn set_default(&self, caller: &Caller, request: &VersionRequest) -> Result<Value, AwsError> {
        let name = required(request.name.clone(), "name")?;
        let mut documents = self.lock();
        let stored = documents
            .get_mut(&key(caller, &name))
            .ok_or_else(|| invalid_document(&name))?;
        let version = stored.version(request.document_version.as_deref())?;
        stored.default_version = version;
        tracing::info!(%name, version, "document default version set");
        Ok(json!({
            "Description": {
                "Name": stored.name,
                "DefaultVersion": version.to_string(),
            }
        }))
    }

    fn describe(&self, caller: &Caller, request: &VersionRequest) -> Result<Value, AwsError> {
        let name = required(request.name.clone(), "name")?;
        let documents = self.lock();
        let stored = documents
            .get(&key(caller, &name))
            .ok_or_else(|| invalid_document(&name))?;
        let version = match request.document_version.as_deref() {
            None => stored.default_version,
            given => stored.version(given)?,
        };
        Ok(json!({ "Document": stored.description(version) }))
    }

    fn get(&self, caller: &Caller, request: &VersionRequest) -> Result<Value, AwsError> {
        let name = required(request.name.clone(), "name")?;
        let documents = self.lock();
        let Some(stored) = documents.get(&key(caller, &name)) else {
            tracing::debug!(%name, "GetDocument: no such document");
            return Err(AwsError::new(
                "InvalidDocument",
                "The specified document does not exist.",
            ));
        };
        let version = match request.document_version.as_deref() {
            None => stored.default_version,
            given => stored.version(given)?,
        };
        let v = &stored.versions[version - 1];
        Ok(json!({
            "Name": stored.name,
            "DocumentVersion": version.to_string(),
            "Status": "Active",
            "Content": v.content,
            "DocumentType": stored.document_type,
            "DocumentFormat": stored.format,
            "CreatedDate": v.created,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Stored>> {
        // Every operation leaves the map consistent: a poisoned lock is still usable.
        self.documents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Stored {
    /// A `DocumentDescription` of `version`.
    fn description(&self, version: usize) -> Value {
        let v = &self.versions[version - 1];
        let parsed: Value = serde_json::from_str(&v.content).unwrap_or(Value::Null);
        let parameters: Vec<Value> = parsed
            .get("parameters")
            .and_then(Value::as_object)
            .map(|params| {
                params
                    .iter()
                    .map(|(name, spec)| {
                        let mut p = json!({
                            "Name": name,
                            "Type": spec.get("type").and_then(Value::as_str).unwrap_or("String"),
                            "Description": spec.get("description").and_then(Value::as_str).unwrap_or(""),
                        });
                        if let Some(default) = spec.get("default").and_then(Value::as_str) {
                            p["DefaultValue"] = Value::String(default.to_owned());
                        }
                        p
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "Name": self.name,
            "Owner": self.owner,
            "DocumentType": self.document_type,
            "DocumentFormat": self.format,
            "DocumentVersion": version.to_string(),
            "LatestVersion": self.versions.len().to_string(),
            "DefaultVersion": self.default_version.to_string(),
            "SchemaVersion": parsed.get("schemaVersion").and_then(Value::as_str).unwrap_or("1.0"),
            "Description": parsed.get("description").and_then(Value::as_str).unwrap_or(""),
            "Status": "Active",
            "Hash": hex::encode(sha2::Sha256::digest(v.content.as_bytes())),
            "HashType": "Sha256",
            "CreatedDate": v.created,
            "Parameters": parameters,
            "PlatformTypes": ["Linux", "MacOS"],
        })
    }

    /// A version number given as text, checked.
    fn version(&self, given: Option<&str>) -> Result<usize, AwsError> {
        let latest = self.versions.len();
        let version = match given {
            None | Some("$LATEST") => Some(latest),
            Some("$DEFAULT") => Some(self.default_version),
            Some(text) => text.parse::<usize>().ok(),
        };
        version.filter(|v| (1..=latest).contains(v)).ok_or_else(|| {
            AwsError::new(
                "InvalidDocumentVersion",
                "The document version is not valid or does not exist.",
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRequest {
    name: Option<String>,
    content: Option<String>,
    document_type: Option<String>,
    document_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateRequest {
    name: Option<String>,
    content: Option<String>,
    document_version: Option<String>,
    document_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionRequest {
    name: Option<String>,
    document_version: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(body).map_err(|e| AwsError::serialization(e.to_string()))
}

fn key(caller: &Caller, name: &str) -> Key {
    (
        caller.principal.account.clone(),
        caller.region.clone(),
        name.to_owned(),
    )
}

fn required(value: Option<String>, field: &str) -> Result<String, AwsError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| {
        AwsError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy \
                 constraint: Member must not be null"
            ),
        )
    })
}

fn invalid_document(name: &str) -> AwsError {
    AwsError::new(
        "InvalidDocument",
        format!("Document with name {name} does not exist."),
    )
}

/// Document names: 3-128 of `[a-zA-Z0-9_.-]`, not starting with a prefix AWS reserves
/// (`aws`, `amazon`, `amzn`; SSM API reference, CreateDocument `Name`).
fn check_name(name: &str) -> Result<(), AwsError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=128).contains(&name.len()) || !valid_chars {
        return Err(AwsError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{name}' at 'name' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.]{{3,128}}$"
            ),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "amazon", "amzn"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(AwsError::new(
            "ValidationException",
            "Document name prefix is reserved by AWS: aws, amazon and amzn.",
        ));
    }
    Ok(())
}

/// A `Session` document must be JSON with `schemaVersion` 1.0 and a known `sessionType` (AWS
/// Systems Manager user guide, "Session document schema").
fn check_content(document_type: &str, format: &str, content: &str) -> Result<(), AwsError> {
    let invalid = |why: &str| AwsError::new("InvalidDocumentContent", why.to_owned());
    if document_type != "Session" {
        return Err(invalid(
            "the emulator stores Session documents only (DocumentType Session)",
        ));
    }
    if format != "JSON" {
        return Err(invalid("the emulator parses JSON session documents only"));
    }
    let parsed: Value =
        serde_json::from_str(content).map_err(|e| invalid(&format!("not valid JSON: {e}")))?;
    if parsed.get("schemaVersion").and_then(Value::as_str) != Some("1.0") {
        return Err(invalid("schemaVersion must be 1.0"));
    }
    match parsed.get("sessionType").and_then(Value::as_str) {
        Some("Standard_Stream" | "InteractiveCommands" | "NonInteractiveCommands" | "Port") => {
            Ok(())
        }
        _ => Err(invalid(
            "sessionType must be Standard_Stream, InteractiveCommands, NonInteractiveCommands \
             or Port",
        )),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes_and_bad_names_are_refused() {
        assert!(check_name("Postern-Command").is_ok());
        assert!(check_name("SSM-SessionManagerRunShell").is_ok());
        assert!(check_name("AWS-Mine").is_err());
        assert!(check_name("amazonish").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("ab").is_err());
    }

    #[test]
    fn session_content_needs_schema_and_session_type() {
        let ok = r#"{"schemaVersion":"1.0","sessionType":"NonInteractiveCommands"}"#;
        assert!(check_content("Session", "JSON", ok).is_ok());
        assert!(check_content("Command", "JSON", ok).is_err());
        assert!(check_content("Session", "YAML", ok).is_err());
        assert!(check_content("Session", "JSON", r#"{"schemaVersion":"2.2"}"#).is_err());
    }
}
