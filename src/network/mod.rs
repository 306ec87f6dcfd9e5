//! How postern reaches AWS from a corporate network: the proxy variables (`HTTPS_PROXY`,
//! `NO_PROXY`) and the extra certificate authorities of `AWS_CA_BUNDLE`, each read once per
//! process and applied alike to the SDK's calls (`aws`) and the data-channel websocket
//! (`transport`), as the official session-manager-plugin applies the proxy variables to both.
//!
//! It must not print, let a proxy's credentials reach a log line or a message, or weaken
//! verification: a bundle that cannot be used is an error, never a reason to trust less.

mod proxy;
mod tls;

pub use proxy::{
    MAX_RESPONSE_HEAD, NoProxy, ProxyCredentials, ProxyError, ProxySettings, ProxyUrl, TunnelError,
    connect_through,
};
pub use tls::{CA_BUNDLE_VARIABLE, CaBundle, TrustError, ca_bundle, websocket_tls};
