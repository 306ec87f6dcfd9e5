//! Console sign-in for a role's credentials, as a custom identity broker does it (IAM User
//! Guide, "Enable custom identity broker access to the AWS console",
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_enable-console-custom-url.html>):
//! the federation endpoint's `getSigninToken` with the temporary credentials, then the
//! `Action=login` URL that carries the token to the console.
//!
//! The sign-in token and the login URL are secrets (whoever holds the URL in the next 15
//! minutes is signed in as the role), and so is the `getSigninToken` request, whose query holds
//! the credentials: they travel in [`Secret`], and no log line or error names more than the
//! endpoint's scheme, host and path. It never prints. Plain `http://` goes to loopback only
//! (the emulator), as everywhere in postern.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use crate::broker::{AssumedCredentials, Secret};
use crate::network::{ProxySettings, connect_through, websocket_tls};

/// The federation endpoint postern asks for sign-in tokens, and that the login URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationEndpoint {
    url: Url,
}

/// A sign-in token from `getSigninToken` (valid for 15 minutes). `Debug` redacts it.
#[derive(Clone, Debug)]
pub struct SigninToken(Secret);

/// The console's landing page: `--service` and `--region`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destination {
    /// The service's console path (`ec2`, `s3`, `cloudwatch`…); `None`: the console home.
    pub service: Option<String>,
    /// The region to land in.
    pub region: Option<String>,
}

/// Why no sign-in token or URL could be had.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// `POSTERN_FEDERATION_ENDPOINT` is not a URL postern may use.
    #[error(
        "{ENDPOINT_VARIABLE}={shown}: the federation endpoint must be https://, or http:// to a \
         loopback address"
    )]
    InvalidEndpoint {
        /// The value, cut before any query.
        shown: String,
    },
    /// The proxy variables or the trusted certificates are unusable.
    #[error("the network settings are unusable")]
    Settings(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The endpoint could not be reached (connection, proxy tunnel or TLS).
    #[error("could not reach {endpoint}")]
    Connect {
        /// The endpoint (no query).
        endpoint: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("{endpoint} did not answer within {}s", .after.as_secs())]
    Timeout {
        /// The endpoint (no query).
        endpoint: String,
        /// How long postern waited.
        after: Duration,
    },
    /// The endpoint refused: an HTTP status other than 200.
    #[error("{endpoint} refused getSigninToken: HTTP {status}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Refused {
        /// The endpoint (no query).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The answer's message, printable ASCII only, capped.
        message: String,
    },
    /// A 200 answer without a `SigninToken`.
    #[error("{endpoint} answered getSigninToken without a SigninToken")]
    Malformed {
        /// The endpoint (no query).
        endpoint: String,
    },
}

impl FederationEndpoint {
    /// `POSTERN_FEDERATION_ENDPOINT` when set and not empty, else AWS's
    /// `https://signin.aws.amazon.com/federation`.
    pub fn from_env() -> Result<Self, FederationError> {
        match std::env::var(ENDPOINT_VARIABLE) {
            Ok(value) if !value.trim().is_empty() => Self::parse(value.trim()),
            _ => Self::parse(DEFAULT_ENDPOINT),
        }
    }

    /// Parses an endpoint: `https://HOST[:PORT]/PATH`, or `http://` to `localhost` or a
    /// loopback address. A query or fragment is dropped.
    pub fn parse(value: &str) -> Result<Self, FederationError> {
        let invalid = || FederationError::InvalidEndpoint {
            shown: value
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        let mut url = Url::parse(value).map_err(|_| invalid())?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(invalid)?;
        let allowed = match url.scheme() {
            "https" => true,
            "http" => is_loopback_host(host),
            _ => false,
        };
        if !allowed || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid());
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self { url })
    }

    /// The endpoint, without a query: safe to show.
    pub fn shown(&self) -> &str {
        self.url.as_str()
    }

    /// Asks for a sign-in token for `credentials`, with `session_duration` (see
    /// [`session_duration`]) when given. Waits at most `timeout`.
    pub async fn signin_token(
        &self,
        credentials: &AssumedCredentials,
        session_duration: Option<Duration>,
        timeout: Duration,
    ) -> Result<SigninToken, FederationError> {
        let session = serde_json::json!({
            "sessionId": credentials.access_key_id,
            "sessionKey": credentials.secret_access_key.expose(),
            "sessionToken": credentials.session_token.expose(),
        })
        .to_string();
        let mut query = String::from("Action=getSigninToken");
        if let Some(duration) = session_duration {
            query.push_str(&format!("&SessionDuration={}", duration.as_secs()));
        }
        query.push_str("&Session=");
        query.extend(utf8_percent_encode(&session, QUERY_VALUE));
        let path_and_query = Secret::new(format!("{}?{query}", self.url.path()));
        tracing::debug!(
            endpoint = %self.shown(),
            session_duration = session_duration.map(|d| d.as_secs()),
            "requesting a console sign-in token"
        );
        let endpoint = self.shown().to_owned();
        let body = tokio::time::timeout(timeout, self.get(&path_and_query))
            .await
            .map_err(|_| FederationError::Timeout {
                endpoint: endpoint.clone(),
                after: timeout,
            })??;
        let (status, body) = body;
        if status != 200 {
            return Err(FederationError::Refused {
                endpoint,
                status,
                message: error_message(&body),
            });
        }
        let token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("SigninToken")?.as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .ok_or(FederationError::Malformed { endpoint })?;
        tracing::debug!("console sign-in token received");
        Ok(SigninToken(Secret::new(token)))
    }

    /// The login URL: the endpoint with `Action=login`, `Issuer`, `Destination` and the token.
    /// A secret: whoever opens it in the next 15 minutes is signed in.
    pub fn login_url(&self, destination: &Destination, token: &SigninToken) -> Secret {
        let mut url = self.url.as_str().to_owned();
        url.push_str("?Action=login&Issuer=");
        url.extend(utf8_percent_encode(ISSUER, QUERY_VALUE));
        url.push_str("&Destination=");
        url.extend(utf8_percent_encode(&destination.url(), QUERY_VALUE));
        url.push_str("&SigninToken=");
        url.extend(utf8_percent_encode(token.0.expose(), QUERY_VALUE));
        Secret::new(url)
    }

    /// One GET of `path_and_query` (a secret): the status and at most [`MAX_BODY`] bytes of
    /// the body.
    async fn get(&self, path_and_query: &Secret) -> Result<(u16, Bytes), FederationError> {
        let endpoint = self.shown().to_owned();
        let connect = |source: Box<dyn std::error::Error + Send + Sync>| FederationError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        // `parse` checked the host.
        let host = self.url.host_str().unwrap_or_default().to_owned();
        let port = self.url.port_or_known_default().unwrap_or(443);
        let authority = match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let request = http::Request::get(path_and_query.expose())
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| connect(Box::new(e)))?;
        if self.url.scheme() == "http" {
            let stream = dial_loopback(&host, port).await.map_err(connect)?;
            return exchange(stream, request).await.map_err(connect);
        }
        let settings =
            ProxySettings::global().map_err(|e| FederationError::Settings(Box::new(e)))?;
        let tls = websocket_tls().map_err(|e| FederationError::Settings(Box::new(e)))?;
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let stream = match settings.proxy_for(&host, port) {
            Some(proxy) => {
                tracing::debug!(endpoint = %endpoint, %proxy, "through the proxy");
                connect_through(proxy, &host, port)
                    .await
                    .map_err(|e| connect(Box::new(e)))?
            }
            None => TcpStream::connect((bare.as_str(), port))
                .await
                .map_err(|e| connect(Box::new(e)))?,
        };
        let name =
            rustls::pki_types::ServerName::try_from(bare).map_err(|e| connect(Box::new(e)))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| connect(Box::new(e)))?;
        exchange(stream, request).await.map_err(connect)
    }
}

impl Destination {
    /// The console URL to land on: `https://console.aws.amazon.com/SERVICE/home?region=R`,
    /// the console home without a service.
    pub fn url(&self) -> String {
        let service = self
            .service
            .as_deref()
            .map(|s| s.trim_matches('/'))
            .filter(|s| !s.is_empty())
            .unwrap_or("console");
        let mut url = format!("{CONSOLE}/");
        url.extend(utf8_percent_encode(service, PATH_SEGMENT));
        url.push_str("/home");
        if let Some(region) = &self.region {
            url.push_str("?region=");
            url.extend(utf8_percent_encode(region, QUERY_VALUE));
        }
        url
    }
}

impl fmt::Display for FederationEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

/// The `SessionDuration` to ask for, from the configured role `duration`: 15 minutes to 12
/// hours for role credentials, the range the federation endpoint accepts; none for
/// role-chained credentials. The IAM User Guide ("Enable custom identity broker access to the
/// AWS console", step 3, SessionDuration) allows 900 to 43200 seconds for `AssumeRole*`
/// credentials, and its step 2 warns that the federation call fails for a role session that a
/// caller without long-term credentials asked to last longer (role chaining, capped at one
/// hour): without the parameter the endpoint uses its default, within the role session's hour.
pub fn session_duration(duration: Duration, role_chained: bool) -> Option<Duration> {
    if role_chained && duration > CHAINING_CAP {
        return None;
    }
    Some(duration.clamp(MIN_SESSION, MAX_SESSION))
}

/// Whether `host` is `localhost` or a loopback address literal.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Connects to `host:port` over plain TCP, only to an address we checked is loopback (so
/// `/etc/hosts` or DNS cannot send the credentials elsewhere in clear text).
async fn dial_loopback(
    host: &str,
    port: u16,
) -> Result<TcpStream, Box<dyn std::error::Error + Send + Sync>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let addr = addrs
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .ok_or("http:// federation endpoints must resolve to a loopback address")?;
    Ok(TcpStream::connect(addr).await?)
}

/// One HTTP/1.1 request on `stream`; the status and the body (at most [`MAX_BODY`] bytes).
async fn exchange<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<(u16, Bytes), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "federation connection ended");
        }
    });
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    }
    .await;
    driver.abort();
    result
}

/// The message of an error answer: its JSON `message`/`Message` or the text, printable ASCII
/// only, capped (it is shown to the user).
fn error_message(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "Message", "error", "Error"]
                .iter()
                .find_map(|k| v.get(*k)?.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_MESSAGE)
        .collect()
}

/// The variable that overrides the federation endpoint (the emulator's, in tests).
pub const ENDPOINT_VARIABLE: &str = "POSTERN_FEDERATION_ENDPOINT";
/// AWS's federation endpoint (IAM User Guide, "Enable custom identity broker access").
const DEFAULT_ENDPOINT: &str = "https://signin.aws.amazon.com/federation";
/// The console's home; a service's page is `/SERVICE/home`.
const CONSOLE: &str = "https://console.aws.amazon.com";
/// `Issuer`: where the console sends the user when the session ends.
const ISSUER: &str = "postern";
const USER_AGENT: &str = concat!("postern/", env!("CARGO_PKG_VERSION"));
/// SessionDuration bounds (IAM User Guide, step 3).
const MIN_SESSION: Duration = Duration::from_secs(900);
const MAX_SESSION: Duration = Duration::from_secs(43_200);
/// The role-chaining limit on a role session.
const CHAINING_CAP: Duration = Duration::from_secs(3600);
/// The answer is a small JSON object.
const MAX_BODY: usize = 64 * 1024;
const MAX_MESSAGE: usize = 200;
/// Everything but unreserved characters is escaped in a query value (RFC 3986).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH_SEGMENT: &AsciiSet = QUERY_VALUE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(FederationEndpoint::parse("https://signin.aws.amazon.com/federation").is_ok());
        assert!(FederationEndpoint::parse("http://127.0.0.1:4566/federation").is_ok());
        assert!(FederationEndpoint::parse("http://[::1]:4566/federation").is_ok());
        assert!(FederationEndpoint::parse("http://localhost/federation").is_ok());
        assert!(FederationEndpoint::parse("http://example.com/federation").is_err());
        assert!(FederationEndpoint::parse("http://10.0.0.1/federation").is_err());
        assert!(FederationEndpoint::parse("ftp://127.0.0.1/federation").is_err());
        assert!(FederationEndpoint::parse("https://user:pw@example.com/").is_err());
        let err = FederationEndpoint::parse("http://example.com/f?Session=secret").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn endpoints_drop_their_query() {
        let endpoint = FederationEndpoint::parse("https://example.com/federation?x=1").unwrap();
        assert_eq!(endpoint.shown(), "https://example.com/federation");
    }

    #[test]
    fn session_duration_stays_in_range_and_off_for_chained_roles_beyond_an_hour() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(session_duration(h(1), false), Some(h(1)));
        assert_eq!(session_duration(h(24), false), Some(h(12)));
        assert_eq!(
            session_duration(Duration::from_secs(60), false),
            Some(MIN_SESSION)
        );
        assert_eq!(session_duration(h(1), true), Some(h(1)));
        assert_eq!(session_duration(h(2), true), None);
    }

    #[test]
    fn destinations_name_service_and_region() {
        let home = Destination::default();
        assert_eq!(home.url(), "https://console.aws.amazon.com/console/home");
        let ec2 = Destination {
            service: Some("ec2".to_owned()),
            region: Some("eu-west-1".to_owned()),
        };
        assert_eq!(
            ec2.url(),
            "https://console.aws.amazon.com/ec2/home?region=eu-west-1"
        );
        let odd = Destination {
            service: Some("a/../b?x".to_owned()),
            region: None,
        };
        assert_eq!(
            odd.url(),
            "https://console.aws.amazon.com/a%2F..%2Fb%3Fx/home"
        );
    }

    #[test]
    fn login_urls_carry_the_encoded_destination_and_token() {
        let endpoint =
            FederationEndpoint::parse("https://signin.aws.amazon.com/federation").unwrap();
        let token = SigninToken(Secret::new("a+b/c="));
        let url = endpoint.login_url(
            &Destination {
                service: Some("ec2".to_owned()),
                region: Some("eu-west-1".to_owned()),
            },
            &token,
        );
        assert_eq!(
            url.expose(),
            "https://signin.aws.amazon.com/federation?Action=login&Issuer=postern&Destination=\
             https%3A%2F%2Fconsole.aws.amazon.com%2Fec2%2Fhome%3Fregion%3Deu-west-1\
             &SigninToken=a%2Bb%2Fc%3D"
        );
        assert!(!format!("{token:?}").contains("a+b"));
    }

    #[test]
    fn error_messages_are_printable_and_capped() {
        assert_eq!(
            error_message(br#"{"message":"bad\u001b[31m session"}"#),
            "bad [31m session"
        );
        assert_eq!(error_message(&[b'x'; 1000]).len(), MAX_MESSAGE);
    }
}
