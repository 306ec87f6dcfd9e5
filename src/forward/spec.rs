//! `-L` forward specifications: `[BIND:]LOCAL:REMOTE_PORT` (a port on the instance) and
//! `[BIND:]LOCAL:HOST:PORT` (a host reached through the instance), as ssh writes them. IPv6
//! addresses go in brackets (`[::1]:0:5432`, `0:[fd00::5]:5432`). `-D` SOCKS listeners:
//! `[BIND:]PORT`.
//!
//! Parsing only: no socket is opened here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// One `-L` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// Local port; 0 picks a free one.
    pub local_port: u16,
    /// Where the instance connects.
    pub remote: Remote,
}

/// The far end of a forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// `None`: the instance itself (AWS-StartPortForwardingSession); else a host the instance
    /// reaches (AWS-StartPortForwardingSessionToRemoteHost).
    pub host: Option<String>,
    /// The remote port.
    pub port: u16,
}

/// One `-D` argument: where a SOCKS5 proxy listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocksSpec {
    /// Local address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// Local port; 0 picks a free one.
    pub port: u16,
}

/// Why a `-L` or `-D` argument does not parse. The text is a user-facing fragment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("-{flag} {spec}: {problem}")]
pub struct SpecError {
    flag: char,
    spec: String,
    problem: String,
}

impl FromStr for SocksSpec {
    type Err = SpecError;

    fn from_str(raw: &str) -> Result<Self, SpecError> {
        let fail = |problem: &str| SpecError {
            flag: 'D',
            spec: raw.to_owned(),
            problem: problem.to_owned(),
        };
        let parts = split_fields(raw).ok_or_else(|| fail("unbalanced brackets"))?;
        let (bind, port) = match parts.as_slice() {
            [port] => (None, *port),
            [bind, port] => (Some(*bind), *port),
            _ => return Err(fail("expected [BIND:]PORT")),
        };
        Ok(Self {
            bind: parse_bind(bind).map_err(|p| fail(&p))?,
            port: port
                .parse::<u16>()
                .map_err(|_| fail(&format!("port `{port}` is not a number from 0 to 65535")))?,
        })
    }
}

impl FromStr for ForwardSpec {
    type Err = SpecError;

    fn from_str(raw: &str) -> Result<Self, SpecError> {
        let fail = |problem: &str| SpecError {
            flag: 'L',
            spec: raw.to_owned(),
            problem: problem.to_owned(),
        };
        let parts = split_fields(raw).ok_or_else(|| fail("unbalanced brackets"))?;
        let (bind, local, host, port) = match parts.as_slice() {
            [local, port] => (None, *local, None, *port),
            [a, b, c] => {
                // LOCAL:HOST:PORT when the first field is a port, else BIND:LOCAL:PORT.
                if a.parse::<u16>().is_ok() && !is_bracketed(a) {
                    (None, *a, Some(*b), *c)
                } else {
                    (Some(*a), *b, None, *c)
                }
            }
            [bind, local, host, port] => (Some(*bind), *local, Some(*host), *port),
            _ => {
                return Err(fail(
                    "expected [BIND:]LOCAL:REMOTE_PORT or [BIND:]LOCAL:HOST:PORT",
                ));
            }
        };
        let bind = parse_bind(bind).map_err(|p| fail(&p))?;
        let local_port = local.parse::<u16>().map_err(|_| {
            fail(&format!(
                "local port `{local}` is not a number from 0 to 65535"
            ))
        })?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                fail(&format!(
                    "remote port `{port}` is not a number from 1 to 65535"
                ))
            })?;
        let host = match host {
            None => None,
            Some(text) => {
                let host = unbracket(text);
                if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
                    return Err(fail(&format!("`{text}` is not a host name or address")));
                }
                Some(host.to_owned())
            }
        };
        Ok(Self {
            bind,
            local_port,
            remote: Remote { host, port },
        })
    }
}

impl Remote {
    /// The host as the instance sees it: the named host, or `localhost`.
    pub fn host_or_localhost(&self) -> &str {
        self.host.as_deref().unwrap_or("localhost")
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_or_localhost();
        if host.contains(':') {
            write!(f, "[{host}]:{}", self.port)
        } else {
            write!(f, "{host}:{}", self.port)
        }
    }
}

/// A bind address: absent or `localhost` is 127.0.0.1, else an IP address (IPv6 may be
/// bracketed).
fn parse_bind(bind: Option<&str>) -> Result<IpAddr, String> {
    match bind {
        None | Some("localhost") => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(text) => unbracket(text)
            .parse()
            .map_err(|_| format!("bind address `{text}` is not an IP address")),
    }
}

/// Splits on `:` outside brackets; `None` when brackets do not balance.
fn split_fields(raw: &str) -> Option<Vec<&str>> {
    let mut fields = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in raw.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            ':' if depth == 0 => {
                fields.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    (depth == 0).then(|| {
        fields.push(&raw[start..]);
        fields
    })
}

fn is_bracketed(text: &str) -> bool {
    text.starts_with('[') && text.ends_with(']')
}

fn unbracket(text: &str) -> &str {
    if is_bracketed(text) {
        &text[1..text.len() - 1]
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn parse(raw: &str) -> ForwardSpec {
        raw.parse().unwrap()
    }

    #[test]
    fn local_and_remote_port_bind_loopback() {
        let spec = parse("8080:80");
        assert_eq!(spec.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(spec.local_port, 8080);
        assert_eq!(
            spec.remote,
            Remote {
                host: None,
                port: 80
            }
        );
        assert_eq!(spec.remote.to_string(), "localhost:80");
    }

    #[test]
    fn local_host_port_goes_through_the_instance() {
        let spec = parse("0:db.internal:5432");
        assert_eq!(spec.local_port, 0);
        assert_eq!(spec.remote.host.as_deref(), Some("db.internal"));
        assert_eq!(spec.remote.to_string(), "db.internal:5432");
    }

    #[test]
    fn bind_local_port_with_three_fields() {
        let spec = parse("0.0.0.0:2222:22");
        assert_eq!(spec.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(spec.local_port, 2222);
        assert_eq!(spec.remote.host, None);
    }

    #[test]
    fn four_fields_with_ipv6_in_brackets() {
        let spec = parse("[::1]:0:[fd00::5]:5432");
        assert_eq!(spec.bind, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(spec.remote.host.as_deref(), Some("fd00::5"));
        assert_eq!(spec.remote.to_string(), "[fd00::5]:5432");
    }

    #[test]
    fn socks_listeners_take_an_optional_bind_address() {
        let spec: SocksSpec = "1080".parse().unwrap();
        assert_eq!(spec.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(spec.port, 1080);
        let spec: SocksSpec = "0.0.0.0:0".parse().unwrap();
        assert_eq!(spec.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let spec: SocksSpec = "[::1]:1080".parse().unwrap();
        assert_eq!(spec.bind, IpAddr::V6(Ipv6Addr::LOCALHOST));
        for (raw, fragment) in [
            ("x", "port `x`"),
            ("host:1080", "bind address `host`"),
            ("1:2:3", "expected [BIND:]PORT"),
        ] {
            let err = raw.parse::<SocksSpec>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("-D {raw}: ")), "{err}");
            assert!(err.contains(fragment), "{raw}: {err}");
        }
    }

    #[test]
    fn rejects_bad_ports_and_shapes() {
        for (raw, fragment) in [
            ("80", "expected"),
            ("x:80", "local port `x`"),
            ("0:0", "remote port `0`"),
            ("0:70000", "remote port `70000`"),
            ("nothost:0:80", "bind address `nothost`"),
            ("[::1:0:80", "unbalanced"),
            ("1:2:3:4:5", "expected"),
        ] {
            let err = raw.parse::<ForwardSpec>().unwrap_err().to_string();
            assert!(err.contains(fragment), "{raw}: {err}");
            assert!(err.starts_with(&format!("-L {raw}: ")), "{err}");
        }
    }
}
