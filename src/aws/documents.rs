//! The SSM document calls `postern setup` makes (DescribeDocument, GetDocument,
//! CreateDocument, UpdateDocument, UpdateDocumentDefaultVersion), each failure an [`AwsError`]
//! naming the operation, region and profile.

use aws_sdk_ssm::types::{DocumentFormat, DocumentType};

use crate::aws::error::AwsError;

/// SSM document calls bound to one account and region.
#[derive(Clone, Debug)]
pub struct DocumentsClient {
    client: aws_sdk_ssm::Client,
    region: String,
    profile: Option<String>,
}

/// What DescribeDocument says of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentVersions {
    /// `DocumentType` (`Session` for session documents).
    pub document_type: String,
    /// The version sessions run.
    pub default_version: String,
    /// The newest version.
    pub latest_version: String,
}

impl DocumentsClient {
    /// A client on `client` (an SSM client for the account and region), with the region and
    /// profile errors name.
    pub fn new(client: aws_sdk_ssm::Client, region: &str, profile: Option<&str>) -> Self {
        Self {
            client,
            region: region.to_owned(),
            profile: profile.map(str::to_owned),
        }
    }

    /// DescribeDocument: the versions of `name`, `None` when the account has no such document.
    pub async fn describe(&self, name: &str) -> Result<Option<DocumentVersions>, AwsError> {
        match self.client.describe_document().name(name).send().await {
            Ok(output) => {
                let doc = output.document();
                Ok(Some(DocumentVersions {
                    document_type: doc
                        .and_then(|d| d.document_type())
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    default_version: doc
                        .and_then(|d| d.default_version())
                        .unwrap_or_default()
                        .to_owned(),
                    latest_version: doc
                        .and_then(|d| d.latest_version())
                        .unwrap_or_default()
                        .to_owned(),
                }))
            }
            Err(err) => {
                let err = self.error("DescribeDocument", err);
                if err.code() == Some(INVALID_DOCUMENT) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// GetDocument: the content of `name` at `version` (the default version when `None`);
    /// `None` when the account has no such document.
    pub async fn content(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let call = self
            .client
            .get_document()
            .name(name)
            .set_document_version(version.map(str::to_owned));
        match call.send().await {
            Ok(output) => Ok(Some(output.content().unwrap_or_default().to_owned())),
            Err(err) => {
                let err = self.error("GetDocument", err);
                if err.code() == Some(INVALID_DOCUMENT) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// CreateDocument: a JSON `Session` document.
    pub async fn create(&self, name: &str, content: &str) -> Result<(), AwsError> {
        self.client
            .create_document()
            .name(name)
            .content(content)
            .document_type(DocumentType::Session)
            .document_format(DocumentFormat::Json)
            .send()
            .await
            .map_err(|err| self.error("CreateDocument", err))?;
        Ok(())
    }

    /// UpdateDocument on the latest version; returns the new version.
    pub async fn update(&self, name: &str, content: &str) -> Result<String, AwsError> {
        let output = self
            .client
            .update_document()
            .name(name)
            .content(content)
            .document_format(DocumentFormat::Json)
            .document_version("$LATEST")
            .send()
            .await
            .map_err(|err| self.error("UpdateDocument", err))?;
        Ok(output
            .document_description()
            .and_then(|d| d.document_version())
            .unwrap_or_default()
            .to_owned())
    }

    /// UpdateDocumentDefaultVersion.
    pub async fn set_default(&self, name: &str, version: &str) -> Result<(), AwsError> {
        self.client
            .update_document_default_version()
            .name(name)
            .document_version(version)
            .send()
            .await
            .map_err(|err| self.error("UpdateDocumentDefaultVersion", err))?;
        Ok(())
    }

    fn error<E, R>(
        &self,
        operation: &'static str,
        err: aws_sdk_ssm::error::SdkError<E, R>,
    ) -> AwsError
    where
        E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        aws_sdk_ssm::error::SdkError<E, R>: aws_types::request_id::RequestId,
    {
        AwsError::from_sdk(operation, &self.region, self.profile.as_deref(), err)
    }
}

/// SSM's code for a document that does not exist.
const INVALID_DOCUMENT: &str = "InvalidDocument";
