//! The SOCKS5 wire format (RFC 1928, with RFC 1929 username/password authentication), sans IO:
//! each `parse_*` takes the bytes received so far and answers "need more", a decoded message
//! and how many bytes it used, or an error; each `encode_*` returns the bytes to send (the
//! client's side too, which tests and the fuzz targets check the parsers against).
//!
//! It must not touch sockets or clocks: the driver (`postern`'s `forward::socks::server`) reads
//! and writes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The client's method offer (RFC 1928 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// The METHODS octets, in the client's order.
    pub methods: Vec<u8>,
}

/// A username and password (RFC 1929 §2). The password never reaches `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserPass {
    /// UNAME.
    pub user: Vec<u8>,
    /// PASSWD.
    pub password: Vec<u8>,
}

/// A SOCKS request (RFC 1928 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// CMD.
    pub command: Command,
    /// DST.ADDR and DST.PORT.
    pub destination: Destination,
}

/// CMD of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `X'01'`: a TCP connection to the destination.
    Connect,
    /// `X'02'`: accept one inbound connection (unsupported over Session Manager).
    Bind,
    /// `X'03'`: relay UDP (unsupported: Session Manager carries TCP only).
    UdpAssociate,
    /// Any other value.
    Other(u8),
}

/// Where a CONNECT goes, as the instance will resolve it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The address or name.
    pub host: Host,
    /// The port (never 0).
    pub port: u16,
}

/// DST.ADDR.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// ATYP `X'01'`.
    V4(Ipv4Addr),
    /// ATYP `X'04'`.
    V6(Ipv6Addr),
    /// ATYP `X'03'`: a name for the instance to resolve (printable ASCII, checked).
    Domain(String),
}

/// REP of a reply (RFC 1928 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `X'00'`.
    Succeeded,
    /// `X'01'`: general SOCKS server failure.
    GeneralFailure,
    /// `X'02'`: connection not allowed by ruleset.
    NotAllowed,
    /// `X'03'`: network unreachable.
    NetworkUnreachable,
    /// `X'04'`: host unreachable.
    HostUnreachable,
    /// `X'05'`: connection refused.
    ConnectionRefused,
    /// `X'07'`: command not supported.
    CommandNotSupported,
    /// `X'08'`: address type not supported.
    AddressTypeNotSupported,
}

/// Why bytes from a client are not SOCKS5. Each closes that connection only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// VER is not 5 (or 1 in an RFC 1929 sub-negotiation).
    #[error("version {found} where {expected} was expected")]
    Version {
        /// What the protocol needs there.
        expected: u8,
        /// What the client sent.
        found: u8,
    },
    /// NMETHODS is 0.
    #[error("the greeting offers no authentication method")]
    NoMethods,
    /// RSV is not 0.
    #[error("reserved byte {0:#04x} is not zero")]
    Reserved(u8),
    /// ATYP is not 1, 3 or 4; the client gets reply 8 before the connection closes.
    #[error("address type {0:#04x} is not IPv4, IPv6 or a domain name")]
    AddressType(u8),
    /// A domain name that is empty or not printable ASCII.
    #[error("the domain name is empty or has characters other than printable ASCII")]
    Domain,
    /// DST.PORT is 0.
    #[error("destination port 0")]
    PortZero,
}

impl Reply {
    /// The REP octet.
    pub fn code(self) -> u8 {
        match self {
            Self::Succeeded => 0x00,
            Self::GeneralFailure => 0x01,
            Self::NotAllowed => 0x02,
            Self::NetworkUnreachable => 0x03,
            Self::HostUnreachable => 0x04,
            Self::ConnectionRefused => 0x05,
            Self::CommandNotSupported => 0x07,
            Self::AddressTypeNotSupported => 0x08,
        }
    }

    /// RFC 1928's words for it, for messages.
    pub fn words(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::GeneralFailure => "general failure",
            Self::NotAllowed => "not allowed by ruleset",
            Self::NetworkUnreachable => "network unreachable",
            Self::HostUnreachable => "host unreachable",
            Self::ConnectionRefused => "connection refused",
            Self::CommandNotSupported => "command not supported",
            Self::AddressTypeNotSupported => "address type not supported",
        }
    }
}

/// Parses the method offer at the start of `buf`.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(Greeting, usize)>, CodecError> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    check_version(SOCKS_VERSION, version)?;
    let Some(&count) = buf.get(1) else {
        return Ok(None);
    };
    if count == 0 {
        return Err(CodecError::NoMethods);
    }
    let end = 2 + usize::from(count);
    let Some(methods) = buf.get(2..end) else {
        return Ok(None);
    };
    Ok(Some((
        Greeting {
            methods: methods.to_vec(),
        },
        end,
    )))
}

/// The server's method choice: [`METHOD_NO_AUTH`], [`METHOD_USER_PASS`] or
/// [`METHOD_NONE_ACCEPTABLE`].
pub fn encode_method(method: u8) -> [u8; 2] {
    [SOCKS_VERSION, method]
}

/// Parses an RFC 1929 username/password request at the start of `buf`.
pub fn parse_user_pass(buf: &[u8]) -> Result<Option<(UserPass, usize)>, CodecError> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    check_version(USER_PASS_VERSION, version)?;
    let Some(&user_len) = buf.get(1) else {
        return Ok(None);
    };
    let user_end = 2 + usize::from(user_len);
    let Some(&password_len) = buf.get(user_end) else {
        return Ok(None);
    };
    let end = user_end + 1 + usize::from(password_len);
    let Some(password) = buf.get(user_end + 1..end) else {
        return Ok(None);
    };
    Ok(Some((
        UserPass {
            user: buf[2..user_end].to_vec(),
            password: password.to_vec(),
        },
        end,
    )))
}

/// The RFC 1929 status: success or failure (the client must then close).
pub fn encode_user_pass_status(ok: bool) -> [u8; 2] {
    [USER_PASS_VERSION, if ok { 0x00 } else { 0x01 }]
}

/// Parses a request at the start of `buf`. A request whose command is not CONNECT still
/// parses (the caller answers [`Reply::CommandNotSupported`]).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, CodecError> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    check_version(SOCKS_VERSION, version)?;
    let (Some(&command), Some(&reserved), Some(&address_type)) =
        (buf.get(1), buf.get(2), buf.get(3))
    else {
        return Ok(None);
    };
    if reserved != 0 {
        return Err(CodecError::Reserved(reserved));
    }
    let (host, port_at) = match address_type {
        ATYP_IPV4 => {
            let Some(octets) = buf.get(4..8) else {
                return Ok(None);
            };
            let octets: [u8; 4] = octets.try_into().map_err(|_| CodecError::AddressType(0))?;
            (Host::V4(Ipv4Addr::from(octets)), 8)
        }
        ATYP_IPV6 => {
            let Some(octets) = buf.get(4..20) else {
                return Ok(None);
            };
            let octets: [u8; 16] = octets.try_into().map_err(|_| CodecError::AddressType(0))?;
            (Host::V6(Ipv6Addr::from(octets)), 20)
        }
        ATYP_DOMAIN => {
            let Some(&len) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + usize::from(len);
            let Some(name) = buf.get(5..end) else {
                return Ok(None);
            };
            (Host::Domain(domain(name)?), end)
        }
        other => return Err(CodecError::AddressType(other)),
    };
    let Some(port) = buf.get(port_at..port_at + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    let command = match command {
        0x01 => Command::Connect,
        0x02 => Command::Bind,
        0x03 => Command::UdpAssociate,
        other => Command::Other(other),
    };
    if port == 0 && command == Command::Connect {
        return Err(CodecError::PortZero);
    }
    Ok(Some((
        Request {
            command,
            destination: Destination { host, port },
        },
        port_at + 2,
    )))
}

/// A reply with BND.ADDR and BND.PORT `bound` (postern does not know the instance's address
/// for the connection, so it sends 0.0.0.0:0, as RFC 1928 allows for CONNECT).
pub fn encode_reply(reply: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut out = vec![SOCKS_VERSION, reply.code(), 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

/// [`encode_reply`] with the unspecified bound address.
pub fn encode_reply_unbound(reply: Reply) -> Vec<u8> {
    encode_reply(reply, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

/// The client's side of [`parse_greeting`]: the method offer, or `None` when it lists no
/// method or more than 255 (NMETHODS is one octet and never 0).
pub fn encode_greeting(greeting: &Greeting) -> Option<Vec<u8>> {
    let count = u8::try_from(greeting.methods.len())
        .ok()
        .filter(|&n| n > 0)?;
    let mut out = vec![SOCKS_VERSION, count];
    out.extend_from_slice(&greeting.methods);
    Some(out)
}

/// The client's side of [`parse_user_pass`], or `None` when the user name or the password is
/// longer than 255 bytes (each length is one octet).
pub fn encode_user_pass(given: &UserPass) -> Option<Vec<u8>> {
    let mut out = vec![USER_PASS_VERSION];
    for field in [&given.user, &given.password] {
        out.push(u8::try_from(field.len()).ok()?);
        out.extend_from_slice(field);
    }
    Some(out)
}

/// The client's side of [`parse_request`] (tests and the fuzz targets check the parser with
/// it), or `None` when a domain name is empty or longer than 255 bytes.
pub fn encode_request(request: &Request) -> Option<Vec<u8>> {
    let command = match request.command {
        Command::Connect => 0x01,
        Command::Bind => 0x02,
        Command::UdpAssociate => 0x03,
        Command::Other(code) => code,
    };
    let mut out = vec![SOCKS_VERSION, command, 0x00];
    match &request.destination.host {
        Host::V4(ip) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        Host::V6(ip) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&ip.octets());
        }
        Host::Domain(name) => {
            out.push(ATYP_DOMAIN);
            out.push(u8::try_from(name.len()).ok().filter(|&n| n > 0)?);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&request.destination.port.to_be_bytes());
    Some(out)
}

impl Destination {
    /// The host as StartSession's `host` parameter takes it: IPv6 without brackets (the agent
    /// joins host and port itself; agent `agent/session/plugins/port/port.go`).
    pub fn host_parameter(&self) -> String {
        match &self.host {
            Host::V4(ip) => ip.to_string(),
            Host::V6(ip) => ip.to_string(),
            Host::Domain(name) => name.clone(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::V6(ip) => write!(f, "[{ip}]:{}", self.port),
            Host::V4(ip) => write!(f, "{ip}:{}", self.port),
            Host::Domain(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl fmt::Debug for UserPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPass")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

fn check_version(expected: u8, found: u8) -> Result<(), CodecError> {
    if found == expected {
        Ok(())
    } else {
        Err(CodecError::Version { expected, found })
    }
}

/// A domain name goes into a StartSession parameter and into messages: printable ASCII only
/// (clients send internationalised names as punycode), no spaces, no brackets or slashes.
fn domain(name: &[u8]) -> Result<String, CodecError> {
    let fits = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'/' | b'[' | b']' | b'\\');
    if name.is_empty() || !name.iter().all(fits) {
        return Err(CodecError::Domain);
    }
    // All bytes are ASCII, hence UTF-8.
    String::from_utf8(name.to_vec()).map_err(|_| CodecError::Domain)
}

/// VER of every SOCKS5 message.
pub const SOCKS_VERSION: u8 = 0x05;
/// VER of the RFC 1929 sub-negotiation.
const USER_PASS_VERSION: u8 = 0x01;
/// METHOD `X'00'`: no authentication required.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// METHOD `X'02'`: username/password (RFC 1929).
pub const METHOD_USER_PASS: u8 = 0x02;
/// METHOD `X'FF'`: no acceptable methods; the client closes.
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every proper prefix of `bytes` needs more; the whole parses and uses every byte.
    fn parses_only_whole<T: fmt::Debug>(
        bytes: &[u8],
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, CodecError>,
    ) -> T {
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse(&bytes[..cut]), Ok(None)),
                "prefix of {cut} bytes"
            );
        }
        let mut extra = bytes.to_vec();
        extra.extend_from_slice(b"after");
        let (value, used) = parse(&extra).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        value
    }

    #[test]
    fn greeting_lists_methods_and_needs_all_of_them() {
        let g = parses_only_whole(&[5, 2, 0, 2], parse_greeting);
        assert_eq!(g.methods, vec![METHOD_NO_AUTH, METHOD_USER_PASS]);
    }

    #[test]
    fn rejects_socks4_and_http_and_empty_method_lists() {
        assert_eq!(
            parse_greeting(&[4, 1, 0, 80]),
            Err(CodecError::Version {
                expected: 5,
                found: 4
            })
        );
        assert!(parse_greeting(b"GET / HTTP/1.1\r\n").is_err());
        assert_eq!(parse_greeting(&[5, 0]), Err(CodecError::NoMethods));
    }

    #[test]
    fn connect_requests_for_ipv4_ipv6_and_names() {
        let v4 = parses_only_whole(&[5, 1, 0, 1, 10, 0, 0, 5, 0x15, 0x38], parse_request);
        assert_eq!(v4.command, Command::Connect);
        assert_eq!(v4.destination.to_string(), "10.0.0.5:5432");
        assert_eq!(v4.destination.host_parameter(), "10.0.0.5");

        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&443u16.to_be_bytes());
        let v6 = parses_only_whole(&v6, parse_request);
        assert_eq!(v6.destination.to_string(), "[::1]:443");
        assert_eq!(v6.destination.host_parameter(), "::1");

        let mut name = vec![5, 1, 0, 3, 11];
        name.extend_from_slice(b"db.internal");
        name.extend_from_slice(&5432u16.to_be_bytes());
        let name = parses_only_whole(&name, parse_request);
        assert_eq!(
            name.destination.host,
            Host::Domain("db.internal".to_owned())
        );
        assert_eq!(name.destination.to_string(), "db.internal:5432");
    }

    #[test]
    fn bind_and_udp_parse_so_that_they_can_be_refused() {
        let bind = parse_request(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!(bind.0.command, Command::Bind);
        let udp = parse_request(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!(udp.0.command, Command::UdpAssociate);
        let other = parse_request(&[5, 9, 0, 1, 1, 2, 3, 4, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(other.0.command, Command::Other(9));
    }

    #[test]
    fn rejects_bad_reserved_address_types_names_and_port_zero() {
        assert_eq!(
            parse_request(&[5, 1, 1, 1, 1, 2, 3, 4, 0, 80]),
            Err(CodecError::Reserved(1))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 7, 1, 2, 3, 4, 0, 80]),
            Err(CodecError::AddressType(7))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(CodecError::Domain)
        );
        let mut escape = vec![5, 1, 0, 3, 5];
        escape.extend_from_slice(b"a\x1b[2J");
        escape.extend_from_slice(&[0, 80]);
        assert_eq!(parse_request(&escape), Err(CodecError::Domain));
        assert_eq!(
            parse_request(&[5, 1, 0, 1, 1, 2, 3, 4, 0, 0]),
            Err(CodecError::PortZero)
        );
    }

    #[test]
    fn user_pass_round_and_redacted_debug() {
        let mut bytes = vec![1, 5];
        bytes.extend_from_slice(b"alice");
        bytes.push(6);
        bytes.extend_from_slice(b"s3cret");
        let up = parses_only_whole(&bytes, parse_user_pass);
        assert_eq!(up.user, b"alice");
        assert_eq!(up.password, b"s3cret");
        let debug = format!("{up:?}");
        assert!(
            debug.contains("alice") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert_eq!(
            parse_user_pass(&[5, 0, 0]),
            Err(CodecError::Version {
                expected: 1,
                found: 5
            })
        );
        assert_eq!(encode_user_pass_status(true), [1, 0]);
        assert_eq!(encode_user_pass_status(false), [1, 1]);
    }

    #[test]
    fn client_encoders_give_what_the_parsers_take() {
        let greeting = Greeting {
            methods: vec![METHOD_NO_AUTH, METHOD_USER_PASS],
        };
        let bytes = encode_greeting(&greeting).unwrap();
        assert_eq!(bytes, [5, 2, 0, 2]);
        assert_eq!(parses_only_whole(&bytes, parse_greeting), greeting);
        assert_eq!(encode_greeting(&Greeting { methods: vec![] }), None);
        assert_eq!(
            encode_greeting(&Greeting {
                methods: vec![0; 256]
            }),
            None
        );

        let given = UserPass {
            user: b"alice".to_vec(),
            password: b"s3cret".to_vec(),
        };
        let bytes = encode_user_pass(&given).unwrap();
        assert_eq!(parses_only_whole(&bytes, parse_user_pass), given);
        let long = UserPass {
            user: vec![b'a'; 256],
            password: Vec::new(),
        };
        assert_eq!(encode_user_pass(&long), None);

        for host in [
            Host::V4(Ipv4Addr::new(10, 0, 0, 5)),
            Host::V6(Ipv6Addr::LOCALHOST),
            Host::Domain("db.internal".to_owned()),
        ] {
            let request = Request {
                command: Command::Connect,
                destination: Destination { host, port: 5432 },
            };
            let bytes = encode_request(&request).unwrap();
            assert_eq!(parses_only_whole(&bytes, parse_request), request);
        }
        let unnamed = Request {
            command: Command::Connect,
            destination: Destination {
                host: Host::Domain(String::new()),
                port: 80,
            },
        };
        assert_eq!(encode_request(&unnamed), None);
    }

    #[test]
    fn replies_carry_the_code_and_the_bound_address() {
        assert_eq!(
            encode_reply_unbound(Reply::CommandNotSupported),
            vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        let v6 = encode_reply(Reply::Succeeded, "[::1]:1080".parse().unwrap());
        assert_eq!(v6.len(), 4 + 16 + 2);
        assert_eq!(&v6[..4], &[5, 0, 0, 4]);
        assert_eq!(&v6[20..], &1080u16.to_be_bytes());
        assert_eq!(encode_method(METHOD_NONE_ACCEPTABLE), [5, 0xff]);
        for (reply, code) in [
            (Reply::GeneralFailure, 1),
            (Reply::NotAllowed, 2),
            (Reply::NetworkUnreachable, 3),
            (Reply::HostUnreachable, 4),
            (Reply::ConnectionRefused, 5),
            (Reply::AddressTypeNotSupported, 8),
        ] {
            assert_eq!(reply.code(), code, "{}", reply.words());
        }
    }
}
