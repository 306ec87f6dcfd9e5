//! What postern's TLS trusts: the system's root certificates (rustls-native-certs, which reads
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` too) plus every certificate of the PEM file named by
//! `AWS_CA_BUNDLE`, as the AWS CLI adds it. Loaded once per process, for the SDK's client
//! (`aws::http`) and the websocket's rustls configuration alike.
//!
//! It fails closed: a bundle that is missing, unreadable, empty or holds a certificate that is
//! not a usable trust anchor is an error naming the variable and the path, never skipped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// The certificates of one CA bundle file.
#[derive(Clone, Debug)]
pub struct CaBundle {
    variable: &'static str,
    path: PathBuf,
    pem: Vec<u8>,
    certificates: Vec<CertificateDer<'static>>,
}

/// Why the certificates to trust could not be loaded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TrustError {
    /// The file cannot be read.
    #[error("{variable}={}: the CA bundle cannot be read", .path.display())]
    Unreadable {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file holds no PEM certificate.
    #[error("{variable}={}: the CA bundle holds no PEM certificate", .path.display())]
    Empty {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The PEM is malformed, or a certificate is not a usable trust anchor.
    #[error("{variable}={}: certificate {index} of the CA bundle is not usable: {reason}", .path.display())]
    Invalid {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Which certificate, from 1 (the section after the last good one, for bad PEM).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither the system nor a bundle gave a root certificate.
    #[error("no root certificate to trust: the system's store is empty and AWS_CA_BUNDLE is unset")]
    NoRoots,
    /// rustls refused the configuration (a bug).
    #[error("the TLS configuration was refused: {0}")]
    Config(String),
}

impl CaBundle {
    /// Reads and checks every certificate of `path`, named by `variable`.
    pub fn load(variable: &'static str, path: impl Into<PathBuf>) -> Result<Self, TrustError> {
        let path = path.into();
        let pem = std::fs::read(&path).map_err(|source| TrustError::Unreadable {
            variable,
            path: path.clone(),
            source: Arc::new(source),
        })?;
        let mut certificates = Vec::new();
        for item in CertificateDer::pem_slice_iter(&pem) {
            let certificate = item.map_err(|e| TrustError::Invalid {
                variable,
                path: path.clone(),
                index: certificates.len() + 1,
                reason: e.to_string(),
            })?;
            // The same check the SDK's client makes (it would panic on a failure).
            RootCertStore::empty()
                .add(certificate.clone())
                .map_err(|e| TrustError::Invalid {
                    variable,
                    path: path.clone(),
                    index: certificates.len() + 1,
                    reason: e.to_string(),
                })?;
            certificates.push(certificate);
        }
        if certificates.is_empty() {
            return Err(TrustError::Empty { variable, path });
        }
        Ok(Self {
            variable,
            path,
            pem,
            certificates,
        })
    }

    /// The variable that named the file (`AWS_CA_BUNDLE`).
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its certificates, checked.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The file's bytes (PEM; every certificate in it checked).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// The bundle of `AWS_CA_BUNDLE` (unset or empty: none), loaded once per process.
pub fn ca_bundle() -> Result<Option<&'static CaBundle>, TrustError> {
    static BUNDLE: OnceLock<Result<Option<CaBundle>, TrustError>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            std::env::var_os(CA_BUNDLE_VARIABLE)
                .filter(|path| !path.is_empty())
                .map(|path| CaBundle::load(CA_BUNDLE_VARIABLE, path))
                .transpose()
        })
        .as_ref()
        .map(Option::as_ref)
        .map_err(Clone::clone)
}

/// The websocket's rustls configuration, built once per process: the system's roots and the
/// bundle's certificates, verified as rustls verifies (no weakening).
pub fn websocket_tls() -> Result<Arc<ClientConfig>, TrustError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, TrustError>> = OnceLock::new();
    CONFIG.get_or_init(|| client_config(ca_bundle()?)).clone()
}

/// A rustls client configuration trusting the system's roots and `bundle`'s certificates.
fn client_config(bundle: Option<&CaBundle>) -> Result<Arc<ClientConfig>, TrustError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some system root certificates did not load"
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    if let Some(bundle) = bundle {
        for (index, certificate) in bundle.certificates().iter().enumerate() {
            roots
                .add(certificate.clone())
                .map_err(|e| TrustError::Invalid {
                    variable: bundle.variable(),
                    path: bundle.path().to_owned(),
                    index: index + 1,
                    reason: e.to_string(),
                })?;
        }
        tracing::debug!(
            path = %bundle.path().display(),
            certificates = bundle.certificates().len(),
            "CA bundle"
        );
    }
    if roots.is_empty() {
        return Err(TrustError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The variable naming the extra CA bundle, as the AWS CLI and SDKs read it.
pub const CA_BUNDLE_VARIABLE: &str = "AWS_CA_BUNDLE";
