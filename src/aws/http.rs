//! The SDK's HTTPS client, built as aws-smithy-runtime builds its default one (hyper 1,
//! rustls with aws-lc; `default_https_client` in aws-smithy-runtime `src/client/http.rs`), but
//! given postern's network settings: trust the system's roots plus `AWS_CA_BUNDLE`, and send
//! each `https://` request through `HTTPS_PROXY` exactly when the data channel's websocket
//! would go through it (`network::ProxySettings::proxy_for`: not for `localhost`, a loopback
//! address or a `NO_PROXY` match), as the session-manager-plugin does for both.
//!
//! The SDK's own default (behavior version 2025-08-07 and later) reads `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` through hyper-util, whose rules differ (no ports in
//! `NO_PROXY`, loopback endpoints such as the emulator sent to the proxy too) and knows no
//! `AWS_CA_BUNDLE`. Here two SDK clients, one direct and one through the proxy, sit behind a
//! router that decides per request with our rules; each keeps its own connection pool.
//!
//! Built once per process; it never logs the proxy's credentials (hyper-util marks the
//! `Proxy-Authorization` value sensitive).

use std::sync::OnceLock;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
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
    proxy: &'static ProxySettings,
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
    let direct = sdk_client(ProxyConfig::disabled(), tls_context.clone());
    let proxied = proxy
        .https_proxy
        .as_ref()
        .map(|url| {
            let mut config = ProxyConfig::https(url.to_string())
                .map_err(|e| HttpClientError::Sdk(e.to_string()))?;
            if let Some(credentials) = url.credentials() {
                // The SDK puts them into the proxy URL as given; hyper-util percent-decodes.
                let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
                config = config
                    .with_basic_auth(encode(credentials.user()), encode(credentials.password()));
            }
            Ok::<_, HttpClientError>(sdk_client(config, tls_context.clone()))
        })
        .transpose()?;
    let clients = Clients {
        plain: plain_client(),
        direct,
        proxied,
    };
    Ok(http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Router {
            proxy,
            clients: clients.clone(),
            settings: settings.clone(),
            components: components.clone(),
            plain: OnceLock::new(),
            direct: OnceLock::new(),
            proxied: OnceLock::new(),
        })
    }))
}

/// An SDK client (its connector cache and pools) with `proxy` and `tls_context`. The SDK's
/// own default client is built through this constructor too.
fn sdk_client(proxy: ProxyConfig, tls_context: TlsContext) -> SharedHttpClient {
    let provider = tls::Provider::Rustls(CryptoMode::AwsLc);
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = ConnectorBuilder::default().tls_provider(provider.clone());
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder
            .proxy_config(proxy.clone())
            .tls_context(tls_context.clone())
            .build()
    })
}

/// An SDK client for plain `http://` endpoints (a loopback emulator): no TLS, so no trust
/// store is loaded for it, and never a proxy.
fn plain_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = ConnectorBuilder::default();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.proxy_config(ProxyConfig::disabled()).build_http()
    })
}

/// The SDK clients a [`Router`] picks from.
#[derive(Clone, Debug)]
struct Clients {
    plain: SharedHttpClient,
    direct: SharedHttpClient,
    proxied: Option<SharedHttpClient>,
}

/// Sends each request to the plain, the proxied or the direct connector: `http://` to the
/// plain one, `https://` by [`ProxySettings::proxy_for`]. A connector is built on its first
/// request, so the system's trust store is read (~150 certificates parsed) only once an
/// `https://` request is made, never for an `http://` emulator.
#[derive(Debug)]
struct Router {
    proxy: &'static ProxySettings,
    clients: Clients,
    settings: HttpConnectorSettings,
    components: RuntimeComponents,
    plain: OnceLock<SharedHttpConnector>,
    direct: OnceLock<SharedHttpConnector>,
    proxied: OnceLock<Option<SharedHttpConnector>>,
}

impl Router {
    fn connector(&self, uri: &str) -> &SharedHttpConnector {
        let build =
            |client: &SharedHttpClient| client.http_connector(&self.settings, &self.components);
        if is_plain_http(uri) {
            return self.plain.get_or_init(|| build(&self.clients.plain));
        }
        if through_proxy(self.proxy, uri)
            && let Some(proxied) = self
                .proxied
                .get_or_init(|| self.clients.proxied.as_ref().map(build))
        {
            return proxied;
        }
        self.direct.get_or_init(|| build(&self.clients.direct))
    }
}

impl HttpConnector for Router {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        // The backstop for endpoints postern does not see at start-up (a profile's
        // `endpoint_url` in the shared config files): no plain request leaves this machine,
        // but for the host's own credential sources.
        if !is_host_credential_request(&request)
            && let Some(refusal) = plain_http_refusal(request.uri())
        {
            return HttpConnectorFuture::ready(Err(ConnectorError::user(refusal.into())));
        }
        let connector = self.connector(request.uri()).clone();
        connector.call(request)
    }
}

/// Why `endpoint` may not be used: a plain `http://` one to a host other than this machine
/// (`localhost`, 127.0.0.0/8, `::1`) would carry StartSession's token and STS's credentials
/// unencrypted across the network, as only a loopback emulator may. `None` when it may.
pub(crate) fn plain_http_refusal(endpoint: &str) -> Option<String> {
    if !is_plain_http(endpoint) {
        return None;
    }
    let loopback = url::Url::parse(endpoint)
        .ok()
        .is_some_and(|url| match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        });
    (!loopback).then(|| {
        format!(
            "the endpoint {} is plain http:// to another machine: session tokens and \
             credentials would cross the network unencrypted; use its https:// address, or \
             reach it on this machine (127.0.0.1, an SSH or postern port forward)",
            crate::term::escape(endpoint)
        )
    })
}

/// Whether `request` goes to one of the host's own credential sources: unsigned (a signed AWS
/// call that a profile's `endpoint_url` sends there is refused as any other), to
/// [`is_host_credential_source`].
fn is_host_credential_request(request: &HttpRequest) -> bool {
    let headers = request.headers();
    let signed = headers
        .get("authorization")
        .is_some_and(|value| value.starts_with("AWS4-"))
        || headers.contains_key("x-amz-security-token");
    !signed && is_host_credential_source(request.uri())
}

/// Whether `uri` is one of the link-local credential sources the SDK's providers reach over
/// plain `http://` on port 80 by design (none of them speaks TLS), answered on EC2, ECS and EKS
/// by the instance's own hypervisor or node: EC2's instance metadata service (IMDS, for an
/// instance profile; aws-config `src/imds/client.rs`), ECS task credentials and EKS Pod
/// Identity (aws-config `src/ecs.rs`, which allows plain `http://` to these and to loopback
/// only). Without them postern could not run there with the host's role.
fn is_host_credential_source(uri: &str) -> bool {
    const SOURCES: [std::net::IpAddr; 5] = [
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254)), // IMDS
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)), // IMDS
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 170, 2)),   // ECS
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 170, 23)),  // EKS Pod Identity
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)), // EKS
    ];
    if !is_plain_http(uri) {
        return false;
    }
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    if url.port_or_known_default() != Some(80) {
        return false;
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        _ => return false,
    };
    SOURCES.contains(&ip)
}

/// Whether `uri` is a plain `http://` one (no TLS).
fn is_plain_http(uri: &str) -> bool {
    uri.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// Whether a request to `uri` goes through the proxy: `https` only (plain `http` endpoints are
/// loopback emulators), by the websocket's rules.
fn through_proxy(settings: &ProxySettings, uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    url.scheme() == "https" && settings.proxy_for(host, port).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_machine() {
        for allowed in [
            "http://127.0.0.1:4566",
            "http://127.9.0.1/",
            "http://[::1]:8080",
            "http://LOCALHOST:4566",
            "https://ssm.eu-west-1.amazonaws.com",
            "https://10.0.0.5/",
        ] {
            assert_eq!(plain_http_refusal(allowed), None, "{allowed}");
        }
        for refused in [
            "http://ssm.eu-west-1.amazonaws.com",
            "http://10.0.0.5:4566",
            "http://localstack:4566",
            "http://localhost.example.com/",
            "HTTP://[2001:db8::1]/",
        ] {
            let refusal = plain_http_refusal(refused).expect(refused);
            assert!(refusal.contains("unencrypted"), "{refusal}");
        }
    }

    #[test]
    fn the_hosts_credential_sources_are_the_only_plain_http_beyond_loopback() {
        for source in [
            "http://169.254.169.254/latest/api/token",
            "http://[fd00:ec2::254]/latest/meta-data/iam/security-credentials/",
            "http://169.254.170.2/v2/credentials/abc",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
        ] {
            assert!(is_host_credential_source(source), "{source}");
        }
        for other in [
            "https://169.254.169.254/",
            "http://169.254.169.253/",
            "http://169.254.170.3/",
            "http://169.254.169.254:8080/latest/api/token",
            "http://instance-data/latest/",
            "http://10.0.0.5:4566/",
            "http://ssm.eu-west-1.amazonaws.com/",
        ] {
            assert!(!is_host_credential_source(other), "{other}");
        }
    }

    #[test]
    fn a_signed_call_to_a_credential_address_is_refused_as_any_other() {
        let mut request = HttpRequest::empty();
        request
            .set_uri("http://169.254.169.254/latest/api/token")
            .unwrap();
        assert!(is_host_credential_request(&request));
        // A profile's endpoint_url pointing there: SigV4-signed, with the session token.
        request.headers_mut().insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/ssm/aws4_request",
        );
        assert!(!is_host_credential_request(&request));
        let mut token_only = HttpRequest::empty();
        token_only.set_uri("http://169.254.170.2/v2/x").unwrap();
        token_only
            .headers_mut()
            .insert("x-amz-security-token", "token");
        assert!(!is_host_credential_request(&token_only));
    }

    #[test]
    fn only_http_urls_take_the_connector_without_tls() {
        assert!(is_plain_http("http://127.0.0.1:4566/"));
        assert!(is_plain_http("HTTP://localhost/"));
        assert!(!is_plain_http("https://ssm.eu-west-1.amazonaws.com/"));
        assert!(!is_plain_http("http:/"));
        assert!(!is_plain_http(""));
    }

    #[test]
    fn https_requests_follow_the_websocket_rules_and_plain_http_goes_direct() {
        let settings = ProxySettings::from_vars(|name| match name {
            "HTTPS_PROXY" => Some("http://us%3Aer:p%40ss@proxy:3128".to_owned()),
            "NO_PROXY" => Some("vpce.internal:443".to_owned()),
            _ => None,
        })
        .unwrap();
        let proxied = |uri: &str| through_proxy(&settings, uri);
        assert!(proxied("https://ssm.eu-west-1.amazonaws.com/"));
        assert!(proxied("https://ssm.localhost:8443/"));
        assert!(!proxied("https://localhost:8443/"));
        assert!(!proxied("https://127.0.0.1:8443/"));
        assert!(!proxied("https://vpce.internal/"));
        assert!(proxied("https://vpce.internal:8443/"));
        assert!(!proxied("http://ssm.eu-west-1.amazonaws.com/"));
        assert!(!through_proxy(
            &ProxySettings::default(),
            "https://example.com/"
        ));
    }
}
