//! The SDK's HTTPS client, built as aws-smithy-runtime builds its default one (hyper 1,
//! rustls with aws-lc; `default_https_client` in aws-smithy-runtime `src/client/http.rs`), but
//! given postern's network settings: trust the system's roots plus `AWS_CA_BUNDLE`, and go
//! through `HTTPS_PROXY` unless `NO_PROXY` matches or the endpoint is loopback, as the data
//! channel's websocket does (`network`).
//!
//! The SDK's own default (behavior version 2025-08-07 and later) reads `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` through hyper-util, which sends loopback
//! endpoints (the emulator, LocalStack) to the proxy too, and knows no `AWS_CA_BUNDLE`; this one
//! follows the session-manager-plugin's rules for every connection postern makes. hyper-util's
//! `NO_PROXY` knows no ports: a `host:port` rule bypasses the proxy on every port of that host
//! for the SDK's calls.
//!
//! Built once per process; it never logs the proxy's credentials (hyper-util marks the
//! `Proxy-Authorization` value sensitive).

use std::sync::OnceLock;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_types::sdk_config::SharedHttpClient;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::network::{CaBundle, ProxyError, ProxySettings, TrustError, ca_bundle};

/// Why the SDK's client could not be set up.
#[derive(Clone, Debug, thiserror::Error)]
pub enum HttpClientError {
    /// A proxy variable is unusable.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The CA bundle is unusable.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The SDK refused the settings (a bug).
    #[error("the SDK's HTTP client refused the network settings: {0}")]
    Sdk(String),
}

impl HttpClientError {
    /// The error and its causes on one line, for [`crate::aws::AwsError`]'s message.
    pub fn chain(&self) -> String {
        let mut parts = vec![self.to_string()];
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            parts.push(e.to_string());
            source = e.source();
        }
        parts.join(": ")
    }
}

/// The SDK's HTTPS client for this process.
pub(crate) fn https_client() -> Result<SharedHttpClient, HttpClientError> {
    static CLIENT: OnceLock<Result<SharedHttpClient, HttpClientError>> = OnceLock::new();
    CLIENT
        .get_or_init(|| build(ProxySettings::global()?, ca_bundle()?))
        .clone()
}

fn build(
    proxy: &ProxySettings,
    bundle: Option<&CaBundle>,
) -> Result<SharedHttpClient, HttpClientError> {
    let mut trust = TrustStore::default();
    if let Some(bundle) = bundle {
        // Every certificate in it parsed and checked as a trust anchor when it loaded (the
        // SDK's client panics on one that does not).
        trust = trust.with_pem_certificate(bundle.pem());
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| HttpClientError::Sdk(e.to_string()))?;
    let proxy_config = proxy_config(proxy)?;
    let provider = tls::Provider::Rustls(CryptoMode::AwsLc);
    // The SDK's own default client is built through this constructor too (it keeps a
    // connection pool per connector settings).
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut builder = ConnectorBuilder::default().tls_provider(provider.clone());
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder
                .proxy_config(proxy_config.clone())
                .tls_context(tls_context.clone())
                .build()
        }),
    )
}

/// `HTTPS_PROXY` for `https://` endpoints, with its credentials and `NO_PROXY` plus loopback;
/// plain `http://` endpoints (loopback emulators) always go direct.
fn proxy_config(proxy: &ProxySettings) -> Result<ProxyConfig, HttpClientError> {
    let Some(url) = &proxy.https_proxy else {
        return Ok(ProxyConfig::disabled());
    };
    let mut config =
        ProxyConfig::https(url.to_string()).map_err(|e| HttpClientError::Sdk(e.to_string()))?;
    if let Some(credentials) = url.credentials() {
        // The SDK puts them into the proxy URL as given and hyper-util percent-decodes them.
        let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
        config = config.with_basic_auth(encode(credentials.user()), encode(credentials.password()));
    }
    let mut bypass = proxy.no_proxy.without_ports();
    bypass.extend(LOOPBACK.iter().map(|rule| (*rule).to_owned()));
    Ok(config.no_proxy(bypass.join(",")))
}

/// Never through the proxy (Go's `httpproxy`: `localhost` and loopback addresses).
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.0/8", "::1"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_variable_means_no_proxy_config() {
        assert!(
            proxy_config(&ProxySettings::default())
                .unwrap()
                .is_disabled()
        );
    }

    #[test]
    fn a_proxy_config_is_built_with_credentials_and_loopback_bypassed() {
        let settings = ProxySettings::from_vars(|name| match name {
            "HTTPS_PROXY" => Some("http://us%3Aer:p%40ss@proxy:3128".to_owned()),
            "NO_PROXY" => Some("*.internal:443".to_owned()),
            _ => None,
        })
        .unwrap();
        let config = proxy_config(&settings).unwrap();
        assert!(!config.is_disabled() && !config.is_from_env());
    }
}
