//! The proxy variables, read as the official session-manager-plugin reads them, and the HTTP
//! CONNECT tunnel through the proxy they name.
//!
//! The plugin dials its websocket with gorilla/websocket's `DefaultDialer`
//! (session-manager-plugin `src/websocketutil/websocketutil.go`), whose proxy is Go's
//! `http.ProxyFromEnvironment` (golang.org/x/net `http/httpproxy/proxy.go`): `HTTPS_PROXY`
//! (else `https_proxy`) for `wss://`, `NO_PROXY` (else `no_proxy`) to bypass it, and never a
//! proxy for `localhost` or a loopback address. The tunnel is an HTTP CONNECT with
//! `Proxy-Authorization: Basic` from the proxy URL's user and password (gorilla/websocket
//! `proxy.go`, `httpProxyDialer.Dial`). postern does the same, for its websocket here and for
//! the SDK's calls (`aws::http`).
//!
//! It must not show a proxy's credentials: [`ProxyUrl`] and [`ProxyCredentials`] print without
//! them, and an unparsable variable is named, never echoed.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// The proxy settings of a process: where TLS connections go through, and what bypasses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// The proxy for TLS destinations (`HTTPS_PROXY`, else `https_proxy`).
    pub https_proxy: Option<ProxyUrl>,
    /// Destinations that bypass it (`NO_PROXY`, else `no_proxy`).
    pub no_proxy: NoProxy,
}

/// A proxy URL, `http://[user:password@]host[:port]`. `Display` and `Debug` show
/// `http://host:port/` and the variable it came from, never the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    variable: &'static str,
    host: String,
    port: u16,
    credentials: Option<ProxyCredentials>,
}

/// A proxy's user and password (percent-decoded), sent as `Proxy-Authorization: Basic`.
/// `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    user: String,
    password: String,
}

/// The `NO_PROXY` rules (Go's `httpproxy` semantics): comma-separated entries, each `*` (every
/// host), an IP address or CIDR network, or a domain, optionally with `:port`. `example.com`
/// matches it and its subdomains, `.example.com` and `*.example.com` only its subdomains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    /// The variable and its value, as set (for `postern doctor`).
    source: Option<(&'static str, String)>,
    all: bool,
    rules: Vec<Rule>,
}

/// A proxy variable that postern cannot use.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProxyError {
    /// The value is not a URL (it is not shown: it may hold a password).
    #[error("{variable} is not a proxy URL (expected http://[user:password@]host:port)")]
    Invalid {
        /// The variable.
        variable: &'static str,
    },
    /// A scheme other than `http` (a TLS or SOCKS proxy).
    #[error(
        "{variable}={shown}: {scheme}:// proxies are not supported (only http://, which carries \
         the TLS of the connection inside a CONNECT tunnel)"
    )]
    UnsupportedScheme {
        /// The variable.
        variable: &'static str,
        /// Its scheme.
        scheme: String,
        /// The URL without credentials.
        shown: String,
    },
}

/// Why a CONNECT tunnel through the proxy could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The proxy could not be reached.
    #[error("could not connect to the proxy")]
    Connect(#[source] std::io::Error),
    /// Reading or writing the CONNECT exchange failed.
    #[error("the CONNECT exchange with the proxy failed")]
    Io(#[source] std::io::Error),
    /// The proxy closed the connection before its answer was complete.
    #[error("the proxy closed the connection before answering CONNECT")]
    Closed,
    /// The answer is not an HTTP status line and headers.
    #[error("the proxy's answer to CONNECT is not HTTP")]
    Malformed,
    /// The answer's header section is larger than [`MAX_RESPONSE_HEAD`].
    #[error("the proxy's answer to CONNECT is longer than {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
    /// 407: the proxy wants (other) credentials.
    #[error(
        "the proxy answered 407 Proxy Authentication Required ({})",
        if *.sent_credentials { "it refused the proxy URL's user and password" } else { "the proxy URL has no user and password" }
    )]
    AuthenticationRequired {
        /// Whether we sent credentials.
        sent_credentials: bool,
    },
    /// Any other status than 2xx.
    #[error("the proxy refused the tunnel: {status} {reason}")]
    Refused {
        /// The status code.
        status: u16,
        /// The reason phrase (printable ASCII only, capped).
        reason: String,
    },
}

impl ProxySettings {
    /// The settings of this process, read from its environment once.
    pub fn global() -> Result<&'static Self, ProxyError> {
        static SETTINGS: OnceLock<Result<ProxySettings, ProxyError>> = OnceLock::new();
        SETTINGS
            .get_or_init(|| Self::from_vars(|name| std::env::var(name).ok()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The settings from `var` (the environment, or a test's table). Empty values count as
    /// unset, and the upper-case name wins, as in Go's `httpproxy.FromEnvironment`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let https_proxy = first(["HTTPS_PROXY", "https_proxy"])
            .map(|(name, value)| ProxyUrl::parse(name, &value))
            .transpose()?;
        let no_proxy = first(["NO_PROXY", "no_proxy"])
            .map(|(name, value)| NoProxy::parse(name, &value))
            .unwrap_or_default();
        Ok(Self {
            https_proxy,
            no_proxy,
        })
    }

    /// The proxy for a TLS connection to `host:port`, or `None` to dial directly: no proxy
    /// set, `localhost` or a loopback address, or a `NO_PROXY` match.
    pub fn proxy_for(&self, host: &str, port: u16) -> Option<&ProxyUrl> {
        let proxy = self.https_proxy.as_ref()?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if is_loopback(&host) || self.no_proxy.matches(&host, port) {
            return None;
        }
        Some(proxy)
    }
}

impl ProxyUrl {
    /// Parses the value of `variable`. A value without a scheme is `http://` (as Go does);
    /// `https://` and `socks5://` proxies are refused.
    pub fn parse(variable: &'static str, value: &str) -> Result<Self, ProxyError> {
        let value = value.trim();
        let url = Url::parse(value)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h"))
            .or_else(|| {
                // `host:port` without a scheme (Go prepends `http://` too); never a second
                // scheme in front of a URL that failed to parse.
                (!value.contains("://"))
                    .then(|| Url::parse(&format!("http://{value}")).ok())
                    .flatten()
            })
            .ok_or(ProxyError::Invalid { variable })?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ProxyError::Invalid { variable })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let credentials =
            (!url.username().is_empty() || url.password().is_some()).then(|| ProxyCredentials {
                user: decode(url.username()),
                password: decode(url.password().unwrap_or_default()),
            });
        let proxy = Self {
            variable,
            host,
            port: url.port_or_known_default().unwrap_or(80),
            credentials,
        };
        if url.scheme() != "http" {
            return Err(ProxyError::UnsupportedScheme {
                variable,
                scheme: url.scheme().to_owned(),
                shown: format!("{}://{}", url.scheme(), proxy.authority()),
            });
        }
        Ok(proxy)
    }

    /// The variable the URL came from (`HTTPS_PROXY` or `https_proxy`).
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The proxy's host (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port (80 when the URL has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user and password of the URL, if any.
    pub fn credentials(&self) -> Option<&ProxyCredentials> {
        self.credentials.as_ref()
    }

    /// `host:port`, with brackets around an IPv6 address.
    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

impl ProxyCredentials {
    /// The user (percent-decoded).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password (percent-decoded; empty when the URL has none).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `Proxy-Authorization` value: `Basic base64(user:password)` (RFC 7617).
    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl NoProxy {
    /// Parses the value of `variable`; entries that are not hosts, addresses or networks
    /// (an empty host, a bad port) are skipped, as Go skips them.
    pub fn parse(variable: &'static str, value: &str) -> Self {
        let mut no_proxy = Self {
            source: Some((variable, value.trim().to_owned())),
            ..Self::default()
        };
        for entry in value.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            if let Some(rule) = Rule::parse(&entry) {
                no_proxy.rules.push(rule);
            }
        }
        no_proxy
    }

    /// The variable and its value as set, if any (`NO_PROXY`, `no_proxy`).
    pub fn source(&self) -> Option<(&'static str, &str)> {
        self.source
            .as_ref()
            .map(|(name, value)| (*name, value.as_str()))
    }

    /// Whether a connection to `host` (lower case, no brackets) on `port` bypasses the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|rule| rule.matches(host, ip, port))
    }

    /// The rules in the form of matchers that know no ports (hyper-util's, which the SDK's
    /// client uses): `*.example.com` as `.example.com`, and a rule's port dropped, so such a
    /// rule bypasses the proxy on every port of its host.
    pub fn without_ports(&self) -> Vec<String> {
        if self.all {
            return vec!["*".to_owned()];
        }
        self.rules.iter().map(Rule::without_port).collect()
    }
}

/// Opens a TCP connection to `proxy` (Nagle off) and a CONNECT tunnel through it to
/// `host:port`; the stream returned carries the destination's bytes. Sends the proxy URL's
/// credentials as `Proxy-Authorization: Basic`, and logs neither them nor the request.
pub async fn connect_through(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<TcpStream, TunnelError> {
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(TunnelError::Connect)?;
    stream.set_nodelay(true).map_err(TunnelError::Connect)?;
    let target = authority(host.trim_start_matches('[').trim_end_matches(']'), port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = &proxy.credentials {
        request.push_str("Proxy-Authorization: ");
        request.push_str(&credentials.basic());
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(TunnelError::Io)?;
    let head = read_head(&mut stream).await?;
    let (status, reason) = status_line(&head)?;
    tracing::debug!(proxy = %proxy, %target, status, "proxy answered CONNECT");
    match status {
        200..=299 => Ok(stream),
        407 => Err(TunnelError::AuthenticationRequired {
            sent_credentials: proxy.credentials.is_some(),
        }),
        _ => Err(TunnelError::Refused { status, reason }),
    }
}

/// One `NO_PROXY` entry other than `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// `10.0.0.0/8`, `fd00::/8`.
    Network { base: IpAddr, prefix: u8 },
    /// `10.1.2.3`, `10.1.2.3:443`, `[::1]:443`.
    Address { ip: IpAddr, port: Option<u16> },
    /// `example.com` (`suffix` `.example.com`, `exact`), `.example.com` (subdomains only).
    Domain {
        suffix: String,
        exact: bool,
        port: Option<u16>,
    },
}

impl Rule {
    fn parse(entry: &str) -> Option<Self> {
        if let Some((base, prefix)) = entry.split_once('/') {
            let base = base.parse::<IpAddr>().ok()?;
            let prefix = prefix.parse::<u8>().ok()?;
            let max = if base.is_ipv4() { 32 } else { 128 };
            return (prefix <= max).then_some(Self::Network { base, prefix });
        }
        let (host, port) = split_host_port(entry)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Self::Address { ip, port });
        }
        if host.is_empty() || host == "." {
            return None;
        }
        let host = host.strip_prefix('*').unwrap_or(host);
        Some(match host.strip_prefix('.') {
            Some(_) => Self::Domain {
                suffix: host.to_owned(),
                exact: false,
                port,
            },
            None => Self::Domain {
                suffix: format!(".{host}"),
                exact: true,
                port,
            },
        })
    }

    fn matches(&self, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
        let port_ok = |rule_port: &Option<u16>| rule_port.is_none_or(|p| p == port);
        match self {
            Self::Network { base, prefix } => ip.is_some_and(|ip| in_network(ip, *base, *prefix)),
            Self::Address { ip: rule, port: p } => ip == Some(*rule) && port_ok(p),
            Self::Domain {
                suffix,
                exact,
                port: p,
            } => {
                let named = host.ends_with(suffix.as_str()) || (*exact && host == &suffix[1..]);
                named && port_ok(p)
            }
        }
    }

    fn without_port(&self) -> String {
        match self {
            Self::Network { base, prefix } => format!("{base}/{prefix}"),
            Self::Address { ip, .. } => ip.to_string(),
            Self::Domain {
                suffix,
                exact: true,
                ..
            } => suffix[1..].to_owned(),
            Self::Domain { suffix, .. } => suffix.clone(),
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; `None` for a bad port.
fn split_host_port(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match entry.split_once(':') {
        // One colon: host and port. More: a bare IPv6 address.
        Some((host, port)) if !port.contains(':') => Some((host, Some(port.parse().ok()?))),
        _ => Some((entry, None)),
    }
}

fn in_network(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

/// `localhost` or a loopback address: never through a proxy (Go's `useProxy`).
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Reads the proxy's answer up to the blank line that ends its headers, one byte at a time:
/// the bytes after it belong to the destination (its TLS), and must stay in the socket.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, TunnelError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(TunnelError::TooLong);
        }
        match stream.read(&mut byte).await.map_err(TunnelError::Io)? {
            0 => return Err(TunnelError::Closed),
            _ => head.push(byte[0]),
        }
    }
    Ok(head)
}

/// `HTTP/1.x CODE REASON` from the first line of `head`.
fn status_line(head: &[u8]) -> Result<(u16, String), TunnelError> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| TunnelError::Malformed)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(TunnelError::Malformed);
    }
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code))
        .ok_or(TunnelError::Malformed)?;
    let reason = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_REASON)
        .collect();
    Ok((status, reason))
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}/", self.authority())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("variable", &self.variable)
            .field("url", &self.to_string())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCredentials(<redacted>)")
    }
}

/// The most of a proxy's answer to CONNECT we read (a status line and a few headers).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The most of a reason phrase a message shows.
const MAX_REASON: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> ProxySettings {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProxySettings::from_vars(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    fn proxied(settings: &ProxySettings, host: &str, port: u16) -> bool {
        settings.proxy_for(host, port).is_some()
    }

    #[test]
    fn upper_case_wins_and_empty_counts_as_unset() {
        let s = settings(&[
            ("HTTPS_PROXY", ""),
            ("https_proxy", "http://lower:3128"),
            ("NO_PROXY", "a.example"),
            ("no_proxy", "b.example"),
        ]);
        assert_eq!(s.https_proxy.as_ref().unwrap().host(), "lower");
        assert_eq!(s.https_proxy.as_ref().unwrap().variable(), "https_proxy");
        assert_eq!(s.no_proxy.source(), Some(("NO_PROXY", "a.example")));
        assert!(!proxied(&s, "a.example", 443));
        assert!(proxied(&s, "b.example", 443));
        assert_eq!(settings(&[]), ProxySettings::default());
        assert!(!proxied(&settings(&[]), "example.com", 443));
    }

    #[test]
    fn proxy_urls_default_to_http_and_port_80_and_hide_credentials() {
        let p = ProxyUrl::parse("HTTPS_PROXY", "proxy.corp:3128").unwrap();
        assert_eq!((p.host(), p.port()), ("proxy.corp", 3128));
        assert!(p.credentials().is_none());
        let p = ProxyUrl::parse("HTTPS_PROXY", "http://u%40corp:p%3Ass%40w@10.0.0.1").unwrap();
        assert_eq!(p.port(), 80);
        let c = p.credentials().unwrap();
        assert_eq!((c.user(), c.password()), ("u@corp", "p:ss@w"));
        assert_eq!(p.to_string(), "http://10.0.0.1:80/");
        let shown = format!("{p} {p:?}");
        assert!(!shown.contains("corp") && !shown.contains("ss"), "{shown}");
        let p = ProxyUrl::parse("HTTPS_PROXY", "http://[::1]:8080").unwrap();
        assert_eq!(
            (p.host(), p.to_string().as_str()),
            ("::1", "http://[::1]:8080/")
        );
    }

    #[test]
    fn tls_and_socks_proxies_are_refused_without_showing_the_password() {
        for value in ["https://u:secret@proxy:443", "socks5://u:secret@proxy:1080"] {
            let e = ProxyUrl::parse("HTTPS_PROXY", value).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, ProxyError::UnsupportedScheme { .. }), "{text}");
            assert!(
                !text.contains("secret") && text.contains("proxy:"),
                "{text}"
            );
        }
        let e = ProxyUrl::parse("HTTPS_PROXY", "http://u:secret@").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn loopback_never_goes_through_the_proxy() {
        let s = settings(&[("HTTPS_PROXY", "http://proxy:3128")]);
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
        ] {
            assert!(!proxied(&s, host, 443), "{host}");
        }
        // A name is not resolved to decide: only the literal `localhost` is loopback here.
        assert!(proxied(&s, "ssm.localhost", 443));
        assert!(proxied(&s, "ssmmessages.eu-west-1.amazonaws.com", 443));
    }

    #[test]
    fn no_proxy_matches_suffixes_leading_dots_wildcards_ports_and_addresses() {
        let s = settings(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            (
                "NO_PROXY",
                " Example.COM , .internal, *.corp.test, vpce.test:8443, 10.1.2.3, \
                 [2001:db8::1]:443, 192.168.0.0/16, fc00::/7, , bad:port, :80",
            ),
        ]);
        let direct = |host: &str, port: u16| !proxied(&s, host, port);
        // `example.com`: itself and subdomains, not look-alikes.
        assert!(direct("example.com", 443));
        assert!(direct("ssm.EXAMPLE.com", 443));
        assert!(!direct("notexample.com", 443));
        // `.internal`, `*.corp.test`: subdomains only.
        assert!(direct("db.internal", 443));
        assert!(!direct("internal", 443));
        assert!(direct("a.b.corp.test", 443));
        assert!(!direct("corp.test", 443));
        // A port narrows a rule.
        assert!(direct("vpce.test", 8443));
        assert!(!direct("vpce.test", 443));
        // Addresses and networks.
        assert!(direct("10.1.2.3", 1));
        assert!(!direct("10.1.2.4", 1));
        assert!(direct("2001:db8::1", 443));
        assert!(!direct("2001:db8::1", 444));
        assert!(direct("192.168.40.2", 443));
        assert!(!direct("192.169.0.1", 443));
        assert!(direct("fd12::5", 443));
        assert!(!direct("2001:db8::2", 443));
        // Bad entries are skipped, not fatal.
        assert!(!direct("bad", 443));
    }

    #[test]
    fn no_proxy_star_bypasses_everything() {
        let s = settings(&[("HTTPS_PROXY", "http://proxy:3128"), ("no_proxy", "*")]);
        assert!(!proxied(&s, "anything.example", 443));
        assert_eq!(s.no_proxy.without_ports(), vec!["*"]);
    }

    #[test]
    fn rules_for_port_blind_matchers_drop_ports_and_wildcards() {
        let n = NoProxy::parse(
            "NO_PROXY",
            "example.com,.internal,*.corp.test,vpce.test:8443,10.0.0.0/8,[::1]:80",
        );
        assert_eq!(
            n.without_ports(),
            [
                "example.com",
                ".internal",
                ".corp.test",
                "vpce.test",
                "10.0.0.0/8",
                "::1"
            ]
        );
    }

    #[test]
    fn status_lines_parse_and_reasons_are_sanitised() {
        assert_eq!(
            status_line(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap(),
            (200, "Connection established".to_owned())
        );
        assert_eq!(status_line(b"HTTP/1.0 200\r\n\r\n").unwrap().0, 200);
        let (status, reason) = status_line(b"HTTP/1.1 403 No\x1b[31m way\r\n\r\n").unwrap();
        assert_eq!((status, reason.as_str()), (403, "No[31m way"));
        assert!(matches!(
            status_line(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(TunnelError::Malformed)
        ));
        assert!(matches!(
            status_line(b"HTTP/1.1 abc\r\n\r\n"),
            Err(TunnelError::Malformed)
        ));
    }

    #[tokio::test]
    async fn connect_sends_the_authority_and_basic_credentials_and_keeps_the_tunnel_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            // The answer and the destination's first bytes in one write: the tunnel must
            // keep the latter.
            socket
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\nhello")
                .await
                .unwrap();
            String::from_utf8(seen).unwrap()
        });
        let proxy = ProxyUrl::parse(
            "HTTPS_PROXY",
            &format!("http://al%20ice:s3cr%3At@127.0.0.1:{port}"),
        )
        .unwrap();
        let mut tunnel = connect_through(&proxy, "::1", 8443).await.unwrap();
        let mut hello = [0u8; 5];
        tunnel.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        let request = server.await.unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("al ice:s3cr:t");
        assert_eq!(
            request,
            format!(
                "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nProxy-Authorization: Basic \
                 {expected}\r\n\r\n"
            )
        );
    }

    #[tokio::test]
    async fn a_407_says_whether_credentials_were_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                .await;
        });
        let proxy = ProxyUrl::parse("HTTPS_PROXY", &format!("127.0.0.1:{port}")).unwrap();
        let e = connect_through(&proxy, "example.com", 443)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                TunnelError::AuthenticationRequired {
                    sent_credentials: false
                }
            ),
            "{e}"
        );
    }
}
