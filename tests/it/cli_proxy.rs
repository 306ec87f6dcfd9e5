//! Corporate networks: `HTTPS_PROXY`, `NO_PROXY` and `AWS_CA_BUNDLE` for the SDK's calls and
//! the data-channel websocket alike, with the real binary and the real emulator on loopback.
//!
//! In front of the emulator stands a TLS-terminating relay written here, presenting a
//! certificate from a throwaway CA (rcgen) and forwarding to the emulator's plain HTTP port;
//! the emulator advertises its StreamUrl on the relay (`--public-url`, `wss://`). A loopback
//! HTTP CONNECT proxy, also written here, records each CONNECT line and Proxy-Authorization
//! and relays bytes; every destination is mapped to 127.0.0.1, so names under `.localhost`
//! (which postern, like the session-manager-plugin, proxies: only `localhost` and loopback
//! addresses never are) reach the relay only through it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::emulator::EmulatorProcess;
use crate::support::poll::poll;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(60);
/// The proxy's credentials, with characters that need percent-encoding in a URL.
const PROXY_USER: &str = "proxy-user-7f3a";
const PROXY_PASSWORD: &str = "pa:ss@wd-91c2";
const PROXY_PASSWORD_ENCODED: &str = "pa%3Ass%40wd-91c2";
/// What the client says when its own lookup of a name fails (the Rust resolver's words).
const RESOLVE_FAILED: &str = "failed to lookup address information";

#[test]
fn the_session_and_the_sdk_calls_go_through_https_proxy_with_its_credentials() {
    let net = Network::new();
    let relay = net.relay_listener();
    let emu = EmulatorProcess::start(&["--public-url", &relay.url("ssm.localhost")]);
    relay.serve(&net, &emu);
    let proxy = net.proxy();
    let mut cmd = emu.command(&["-vvv", "exec", &emu.instance, "--", "echo through"]);
    cmd.env("AWS_ENDPOINT_URL", relay.url("ssm.localhost"))
        .env("AWS_CA_BUNDLE", net.ca_bundle())
        .env(
            "HTTPS_PROXY",
            format!(
                "http://{PROXY_USER}:{PROXY_PASSWORD_ENCODED}@127.0.0.1:{}",
                proxy.port
            ),
        );
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), "through\n", "{stderr}");

    let tunnels = proxy.tunnels();
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"))
    );
    assert!(!tunnels.is_empty());
    for tunnel in &tunnels {
        assert_eq!(
            tunnel.request_line,
            format!("CONNECT ssm.localhost:{} HTTP/1.1", relay.port)
        );
        assert_eq!(
            tunnel.authorization.as_deref(),
            Some(expected_auth.as_str())
        );
    }
    // Both the SDK's calls (POST /) and the websocket (GET /v1/data-channel/...) reached the
    // relay, every connection from the proxy's side of a tunnel.
    let connections = relay.connections();
    let through = |c: &RelayConnection| tunnels.iter().any(|t| t.upstream_port == c.peer_port);
    assert!(
        connections.iter().all(through),
        "{connections:?} {tunnels:?}"
    );
    assert!(
        connections
            .iter()
            .any(|c| c.first_line.starts_with("POST / ")),
        "{connections:?}"
    );
    assert!(
        connections
            .iter()
            .any(|c| c.first_line.starts_with("GET /v1/data-channel/")),
        "{connections:?}"
    );
    // Trace logs name the proxy, never its credentials.
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{}/", proxy.port)),
        "{stderr}"
    );
    assert_no_credentials(&stderr, &expected_auth);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// Whether this machine resolves `ssmmessages.localhost` (systemd-resolved does, plain
/// `files dns` does not) decides if the direct dial then succeeds; either way the proxy must
/// not have carried it.
#[test]
fn no_proxy_sends_a_matching_host_directly() {
    let net = Network::new();
    let relay = net.relay_listener();
    let emu = EmulatorProcess::start(&["--public-url", &relay.url("ssmmessages.localhost")]);
    relay.serve(&net, &emu);
    let proxy = net.proxy();
    let proxy_url = format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD_ENCODED}@127.0.0.1:{}",
        proxy.port
    );
    let mut cmd = emu.command(&[
        "-vvv",
        "exec",
        "--reconnect-attempts",
        "0",
        &emu.instance,
        "--",
        "echo direct",
    ]);
    cmd.env("AWS_ENDPOINT_URL", relay.url("api.localhost"))
        .env("AWS_CA_BUNDLE", net.ca_bundle())
        .env("https_proxy", &proxy_url)
        .env(
            "no_proxy",
            "example.com, .ssmmessages.localhost, ssmmessages.localhost",
        );
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    // The SDK's calls still went through the proxy; the websocket's host never did.
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty(), "{stderr}");
    for tunnel in &tunnels {
        assert_eq!(
            tunnel.request_line,
            format!("CONNECT api.localhost:{} HTTP/1.1", relay.port),
            "{stderr}"
        );
    }
    let websocket = format!(
        "wss://ssmmessages.localhost:{}/v1/data-channel/",
        relay.port
    );
    if out.status.code() == Some(0) {
        // The websocket reached the relay, on connections no tunnel carried.
        assert_eq!(text(&out.stdout), "direct\n", "{stderr}");
        let websockets: Vec<RelayConnection> = relay
            .connections()
            .into_iter()
            .filter(|c| c.first_line.starts_with("GET /v1/data-channel/"))
            .collect();
        assert!(!websockets.is_empty(), "no websocket: {stderr}");
        let direct = websockets
            .iter()
            .all(|c| tunnels.iter().all(|t| t.upstream_port != c.peer_port));
        assert!(direct, "{websockets:?} {tunnels:?} {stderr}");
    } else {
        // The client looked the name up itself, which it does only when it dials directly.
        assert!(
            stderr.contains("could not open the session's data channel")
                && stderr.contains(&websocket)
                && stderr.contains(RESOLVE_FAILED)
                && !stderr.contains("through the proxy"),
            "{stderr}"
        );
    }
    // The credentials were in use (the SDK's tunnels carried them), and the trace logs never
    // show them.
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"))
    );
    for tunnel in &tunnels {
        assert_eq!(
            tunnel.authorization.as_deref(),
            Some(expected_auth.as_str())
        );
    }
    assert_no_credentials(&stderr, &expected_auth);

    // NO_PROXY for the SDK's endpoint too: nothing at all through the proxy.
    let mut cmd = emu.command(&[
        "exec",
        "--reconnect-attempts",
        "0",
        &emu.instance,
        "--",
        "true",
    ]);
    cmd.env("AWS_ENDPOINT_URL", relay.url("api.localhost"))
        .env("AWS_CA_BUNDLE", net.ca_bundle())
        .env("HTTPS_PROXY", &proxy_url)
        .env("NO_PROXY", "*");
    let before = proxy.tunnels().len();
    let relayed_before = relay.connections().len();
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(proxy.tunnels().len(), before, "{stderr}");
    // The calls were made all the same, directly: they reached the relay, or the client failed
    // to look `api.localhost` up itself where this machine does not resolve it.
    if out.status.code() == Some(0) {
        let connections = relay.connections();
        assert!(
            connections[relayed_before..]
                .iter()
                .any(|c| c.first_line.starts_with("POST / ")),
            "{connections:?} {stderr}"
        );
    } else {
        assert!(
            stderr.contains("could not start a session")
                && stderr.contains(&relay.url("api.localhost"))
                && stderr.contains(RESOLVE_FAILED),
            "{stderr}"
        );
    }
}

#[test]
fn loopback_never_goes_through_the_proxy() {
    let net = Network::new();
    let relay = net.relay_listener();
    let emu = EmulatorProcess::start(&["--public-url", &relay.url("localhost")]);
    relay.serve(&net, &emu);
    let proxy = net.proxy();
    let mut cmd = emu.command(&["exec", &emu.instance, "--", "echo local"]);
    cmd.env("AWS_ENDPOINT_URL", relay.url("localhost"))
        .env("AWS_CA_BUNDLE", net.ca_bundle())
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", proxy.port));
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "local\n");
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());
    // Both the SDK's calls and the websocket reached the relay, directly.
    let connections = relay.connections();
    for first in ["POST / ", "GET /v1/data-channel/"] {
        assert!(
            connections.iter().any(|c| c.first_line.starts_with(first)),
            "{first}: {connections:?}"
        );
    }
}

#[test]
fn the_websocket_trusts_aws_ca_bundle_and_fails_closed_without_it() {
    let net = Network::new();
    let relay = net.relay_listener();
    let emu = EmulatorProcess::start(&["--public-url", &relay.url("localhost")]);
    relay.serve(&net, &emu);
    // The control plane on the emulator's plain loopback port: only the websocket is TLS.
    let untrusted = run(
        emu.command(&[
            "exec",
            "--reconnect-attempts",
            "0",
            &emu.instance,
            "--",
            "true",
        ]),
        LIMIT,
    );
    let stderr = text(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(252), "{stderr}");
    assert!(
        stderr.contains("could not open the session's data channel")
            && stderr.contains(&format!("wss://localhost:{}/v1/data-channel/", relay.port))
            && stderr.contains("invalid peer certificate")
            && stderr.contains("set AWS_CA_BUNDLE to its CA certificate"),
        "{stderr}"
    );
    let mut trusted = emu.command(&["exec", &emu.instance, "--", "echo verified"]);
    trusted.env("AWS_CA_BUNDLE", net.ca_bundle());
    let out = run(trusted, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "verified\n");
}

#[test]
fn the_sdk_calls_trust_aws_ca_bundle_and_fail_closed_without_it() {
    let net = Network::new();
    let relay = net.relay_listener();
    let emu = EmulatorProcess::start(&["--public-url", &relay.url("localhost")]);
    relay.serve(&net, &emu);
    let mut untrusted = emu.command(&["exec", &emu.instance, "--", "true"]);
    untrusted.env("AWS_ENDPOINT_URL", relay.url("localhost"));
    let out = run(untrusted, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(252), "{stderr}");
    assert!(
        stderr.contains("StartSession") && stderr.contains("AWS_CA_BUNDLE"),
        "{stderr}"
    );
    // The client did reach the relay (it records a connection once its handshake ends), and
    // no request got past the TLS handshake.
    let connections = poll(LIMIT, || {
        let connections = relay.connections();
        (!connections.is_empty()).then_some(connections)
    });
    assert!(
        connections.iter().all(|c| c.first_line.is_empty()),
        "{connections:?}"
    );
    let mut trusted = emu.command(&["exec", &emu.instance, "--", "echo verified"]);
    trusted
        .env("AWS_ENDPOINT_URL", relay.url("localhost"))
        .env("AWS_CA_BUNDLE", net.ca_bundle());
    let out = run(trusted, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "verified\n");
}

#[test]
fn an_unusable_ca_bundle_is_an_error_naming_the_variable_and_the_path() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, says) in [
        (&missing, "the CA bundle cannot be read"),
        (&empty, "the CA bundle holds no PEM certificate"),
    ] {
        let mut cmd = emu.command(&["exec", &emu.instance, "--", "true"]);
        cmd.env("AWS_CA_BUNDLE", path);
        let out = run(cmd, LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(248), "{stderr}");
        assert!(
            stderr.contains(&format!("AWS_CA_BUNDLE={}: {says}", path.display()))
                && stderr.contains("point AWS_CA_BUNDLE at a readable PEM file"),
            "{stderr}"
        );
    }
}

#[test]
fn doctor_reports_the_proxy_without_credentials_no_proxy_and_the_bundle() {
    let net = Network::new();
    let emu = EmulatorProcess::start(&[]);
    let mut cmd = emu.command(&["doctor"]);
    cmd.env(
        "HTTPS_PROXY",
        format!("http://{PROXY_USER}:{PROXY_PASSWORD_ENCODED}@proxy.corp.test:3128"),
    )
    .env("NO_PROXY", ".internal,10.0.0.0/8")
    .env("AWS_CA_BUNDLE", net.ca_bundle());
    let out = run(cmd, LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.contains("network settings:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.starts_with("PASS  "), "{line}");
    for part in [
        "proxy http://proxy.corp.test:3128/ (HTTPS_PROXY, with its user and password)",
        "NO_PROXY=.internal,10.0.0.0/8",
        &format!(
            "1 certificate of AWS_CA_BUNDLE={}",
            net.ca_bundle().display()
        ),
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert_no_credentials(&format!("{stdout}{}", text(&out.stderr)), PROXY_PASSWORD);
}

fn assert_no_credentials(output: &str, also: &str) {
    for secret in [PROXY_USER, PROXY_PASSWORD, PROXY_PASSWORD_ENCODED, also] {
        assert!(!output.contains(secret), "{secret} shown:\n{output}");
    }
}

/// The test's loopback network: a throwaway CA, a runtime for the relay and the proxy.
struct Network {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
}

impl Network {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "postern test CA (throwaway)");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names = [
            "localhost",
            "ssm.localhost",
            "api.localhost",
            "ssmmessages.localhost",
            "127.0.0.1",
        ];
        let params = rcgen::CertificateParams::new(names.map(str::to_owned).to_vec()).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Self {
            runtime,
            dir,
            server: Arc::new(server),
        }
    }

    /// The throwaway CA's certificate (PEM).
    fn ca_bundle(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A relay's listener, bound now so the emulator can advertise it.
    fn relay_listener(&self) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Relay {
            port: listener.local_addr().unwrap().port(),
            listener: Mutex::new(Some(listener)),
            seen: Arc::default(),
        }
    }

    /// A CONNECT proxy on loopback, serving until the test ends.
    fn proxy(&self) -> Proxy {
        let listener = self
            .runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
        };
        let seen = Arc::clone(&proxy.seen);
        self.runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, Arc::clone(&seen)));
            }
        });
        proxy
    }
}

/// The TLS-terminating relay in front of the emulator.
struct Relay {
    port: u16,
    listener: Mutex<Option<std::net::TcpListener>>,
    seen: Arc<Mutex<Vec<RelayConnection>>>,
}

/// One connection the relay accepted.
#[derive(Clone, Debug)]
struct RelayConnection {
    /// The client's port (the proxy's upstream socket, when tunnelled).
    peer_port: u16,
    /// The first line of the HTTP request inside TLS; empty when TLS failed.
    first_line: String,
}

impl Relay {
    /// `https://HOST:PORT` for this relay.
    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    /// Starts relaying to the emulator's plain HTTP port.
    fn serve(&self, net: &Network, emu: &EmulatorProcess) {
        let upstream: SocketAddr = emu
            .endpoint
            .strip_prefix("http://")
            .expect("an http endpoint")
            .parse()
            .expect("a socket address");
        let listener = self.listener.lock().unwrap().take().expect("served once");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&net.server));
        let seen = Arc::clone(&self.seen);
        net.runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((client, peer)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
                tokio::spawn(async move {
                    let mut record = RelayConnection {
                        peer_port: peer.port(),
                        first_line: String::new(),
                    };
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        seen.lock().unwrap().push(record);
                        return;
                    };
                    let mut first = vec![0u8; 4096];
                    let n = tls.read(&mut first).await.unwrap_or(0);
                    first.truncate(n);
                    record.first_line = String::from_utf8_lossy(&first)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(record);
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    if server.write_all(&first).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                    }
                });
            }
        });
    }

    fn connections(&self) -> Vec<RelayConnection> {
        self.seen.lock().unwrap().clone()
    }
}

/// The CONNECT proxy.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<Tunnel>>>,
}

/// One CONNECT the proxy served.
#[derive(Clone, Debug)]
struct Tunnel {
    request_line: String,
    authorization: Option<String>,
    /// The local port of the proxy's connection to the destination.
    upstream_port: u16,
}

impl Proxy {
    fn tunnels(&self) -> Vec<Tunnel> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves one CONNECT: reads the request head, dials 127.0.0.1 on the requested port,
/// answers 200, then copies bytes both ways.
async fn tunnel(mut client: TcpStream, seen: Arc<Mutex<Vec<Tunnel>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    let port = request_line
        .split(' ')
        .nth(1)
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let Some(port) = port else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let upstream_port = upstream.local_addr().map(|a| a.port()).unwrap_or(0);
    seen.lock().unwrap().push(Tunnel {
        request_line,
        authorization,
        upstream_port,
    });
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
