//! AWS Signature Version 4, the verifying side: reads the `Authorization` header, rebuilds the
//! canonical request and the string to sign from what arrived, derives the signing key from the
//! secret the caller claims to hold and compares signatures in constant time.
//!
//! The steps follow AWS's public description of SigV4 (canonical request, string to sign,
//! `AWS4` + secret → date → region → service → `aws4_request` HMAC-SHA256 chain) and match what
//! the SDKs sign (`aws-sigv4` `src/http_request/canonical_request.rs`, botocore `auth.py`):
//! header values trimmed with inner runs of spaces collapsed, repeated headers joined with `,`,
//! the path percent-encoded once more, query pairs encoded and sorted. The payload hash is
//! always computed from the body received, so a body changed after signing fails, whatever an
//! `x-amz-content-sha256` header claims. It never logs signatures, secrets or canonical requests.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The parts of an `AWS4-HMAC-SHA256` `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Authorization {
    /// The access key id (not secret).
    pub(crate) access_key_id: String,
    /// The credential scope's date, `YYYYMMDD`.
    pub(crate) date: String,
    /// The region the request was signed for.
    pub(crate) region: String,
    /// The signing name of the service (`sts`, `ec2`, `ssm`, `organizations`, `kms`).
    pub(crate) service: String,
    /// The signed header names, lowercase, in the order given.
    pub(crate) signed_headers: Vec<String>,
    /// The signature, lowercase hex.
    signature: String,
}

/// The request as received, as far as SigV4 covers it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received<'a> {
    /// `POST`.
    pub(crate) method: &'a str,
    /// The path as sent (still percent-encoded).
    pub(crate) path: &'a str,
    /// The query string as sent, without `?`.
    pub(crate) query: &'a str,
    /// Every header.
    pub(crate) headers: &'a HeaderMap,
    /// The body.
    pub(crate) body: &'a [u8],
}

/// Why a signature did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SignatureProblem {
    /// The `Authorization` header or a header it needs is malformed or missing.
    Incomplete(&'static str),
    /// The signature is not the one the secret gives.
    Mismatch,
    /// `X-Amz-Date` is further from now than AWS allows.
    Skewed {
        /// The request's `X-Amz-Date`.
        signed_at: String,
    },
}

impl Authorization {
    /// Reads `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
    /// SignedHeaders=a;b, Signature=hex`.
    pub(crate) fn parse(header: &str) -> Result<Self, SignatureProblem> {
        let rest = header
            .strip_prefix(ALGORITHM)
            .filter(|rest| rest.starts_with(' '))
            .ok_or(SignatureProblem::Incomplete(
                "the Authorization header is not AWS4-HMAC-SHA256",
            ))?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim) {
            if let Some(value) = part.strip_prefix("Credential=") {
                credential = Some(value);
            } else if let Some(value) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(value);
            } else if let Some(value) = part.strip_prefix("Signature=") {
                signature = Some(value);
            }
        }
        let incomplete = SignatureProblem::Incomplete;
        let credential = credential.ok_or(incomplete("no Credential"))?;
        let signed_headers = signed_headers.ok_or(incomplete("no SignedHeaders"))?;
        let signature = signature.ok_or(incomplete("no Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, TERMINATOR] = scope[..] else {
            return Err(incomplete("the Credential scope is malformed"));
        };
        if access_key_id.is_empty()
            || region.is_empty()
            || service.is_empty()
            || date.len() != 8
            || !date.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(incomplete("the Credential scope is malformed"));
        }
        let signed_headers: Vec<String> = signed_headers
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect();
        if !signed_headers.iter().any(|name| name == "host") {
            return Err(incomplete("the Host header is not signed"));
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(incomplete("the Signature is not 64 hex digits"));
        }
        Ok(Self {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }

    /// Checks that `secret` signed `request` under this header, at most [`MAX_SKEW`] from
    /// `now`.
    pub(crate) fn verify(
        &self,
        secret: &str,
        request: &Received<'_>,
        now: SystemTime,
    ) -> Result<(), SignatureProblem> {
        let amz_date = header_text(request.headers, "x-amz-date")
            .ok_or(SignatureProblem::Incomplete("no X-Amz-Date header"))?;
        let signed_at = parse_amz_date(&amz_date).ok_or(SignatureProblem::Incomplete(
            "X-Amz-Date is not YYYYMMDDTHHMMSSZ",
        ))?;
        if !amz_date.starts_with(&self.date) {
            return Err(SignatureProblem::Incomplete(
                "the Credential date is not the X-Amz-Date's",
            ));
        }
        let skew = now
            .duration_since(signed_at)
            .unwrap_or_else(|early| early.duration());
        if skew > MAX_SKEW {
            return Err(SignatureProblem::Skewed {
                signed_at: amz_date,
            });
        }
        let canonical = self.canonical_request(request);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{}/{}/{}/{TERMINATOR}\n{}",
            self.date,
            self.region,
            self.service,
            hex::encode(Sha256::digest(canonical.as_bytes())),
        );
        let key = signing_key(secret, &self.date, &self.region, &self.service);
        let expected = hex::decode(&self.signature).map_err(|_| SignatureProblem::Mismatch)?;
        // `verify_slice` compares in constant time.
        hmac(&key, string_to_sign.as_bytes())
            .verify_slice(&expected)
            .map_err(|_| SignatureProblem::Mismatch)
    }

    /// The canonical request: method, path, query, signed headers, their names, payload hash.
    fn canonical_request(&self, request: &Received<'_>) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            request.method,
            canonical_path(request.path),
            canonical_query(request.query)
        );
        for name in &self.signed_headers {
            let values: Vec<String> = request
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|value| collapse_spaces(&String::from_utf8_lossy(value.as_bytes())))
                .collect();
            text.push_str(name);
            text.push(':');
            text.push_str(&values.join(","));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.signed_headers.join(";"));
        text.push('\n');
        text.push_str(&hex::encode(Sha256::digest(request.body)));
        text
    }
}

/// The signing key: HMAC chain from `AWS4` + secret over date, region, service, `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let date_key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes()).finalize();
    let region_key = hmac(&date_key.into_bytes(), region.as_bytes()).finalize();
    let service_key = hmac(&region_key.into_bytes(), service.as_bytes()).finalize();
    hmac(&service_key.into_bytes(), TERMINATOR.as_bytes())
        .finalize()
        .into_bytes()
        .to_vec()
}

fn hmac(key: &[u8], data: &[u8]) -> hmac::Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail here.
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    mac.update(data);
    mac
}

/// The path percent-encoded once more, as the SDKs sign it for every service but S3.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// Query pairs decoded, re-encoded and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (encode(&key), encode(&value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but the unreserved characters (`A-Z a-z 0-9 - _ . ~`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Trims spaces and collapses inner runs of spaces to one (`aws-sigv4` `trim_all`).
fn collapse_spaces(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split(' ').filter(|word| !word.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|_| &text[range])
    };
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// The signing algorithm, the only one the services we emulate accept.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every credential scope.
const TERMINATOR: &str = "aws4_request";
/// How far `X-Amz-Date` may be from the service's clock: AWS allows 15 minutes either way.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    /// AWS's public SigV4 example: IAM `ListUsers` signed with the documentation's example
    /// secret on 2015-08-30 (AWS General Reference, "Examples of the complete Signature
    /// Version 4 signing process").
    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EXAMPLE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
        Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
        SignedHeaders=content-type;host;x-amz-date, \
        Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        headers.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        headers
    }

    fn example_request(headers: &HeaderMap) -> Received<'_> {
        Received {
            method: "GET",
            path: "/",
            query: "Version=2010-05-08&Action=ListUsers",
            headers,
            body: b"",
        }
    }

    fn example_now() -> SystemTime {
        parse_amz_date("20150830T123600Z").unwrap()
    }

    #[test]
    fn verifies_the_aws_example() {
        let auth = Authorization::parse(EXAMPLE_AUTHORIZATION).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        assert_eq!(auth.service, "iam");
        let headers = example_headers();
        let request = example_request(&headers);
        assert_eq!(
            hex::encode(Sha256::digest(auth.canonical_request(&request).as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(auth.verify(EXAMPLE_SECRET, &request, example_now()), Ok(()));
    }

    #[test]
    fn rejects_another_secret_body_or_header() {
        let auth = Authorization::parse(EXAMPLE_AUTHORIZATION).unwrap();
        let headers = example_headers();
        let request = example_request(&headers);
        let now = example_now();
        assert_eq!(
            auth.verify("not-the-secret", &request, now),
            Err(SignatureProblem::Mismatch)
        );
        let tampered = Received {
            body: b"Action=DeleteUser",
            ..request
        };
        assert_eq!(
            auth.verify(EXAMPLE_SECRET, &tampered, now),
            Err(SignatureProblem::Mismatch)
        );
        let mut other_host = example_headers();
        other_host.insert("host", HeaderValue::from_static("evil.example"));
        assert_eq!(
            auth.verify(EXAMPLE_SECRET, &example_request(&other_host), now),
            Err(SignatureProblem::Mismatch)
        );
    }

    #[test]
    fn allows_fifteen_minutes_of_skew_either_way() {
        let auth = Authorization::parse(EXAMPLE_AUTHORIZATION).unwrap();
        let headers = example_headers();
        let request = example_request(&headers);
        for now in [example_now() + MAX_SKEW, example_now() - MAX_SKEW] {
            assert_eq!(auth.verify(EXAMPLE_SECRET, &request, now), Ok(()));
        }
        for now in [
            example_now() + MAX_SKEW + Duration::from_secs(1),
            example_now() - MAX_SKEW - Duration::from_secs(1),
        ] {
            assert!(matches!(
                auth.verify(EXAMPLE_SECRET, &request, now),
                Err(SignatureProblem::Skewed { .. })
            ));
        }
    }

    #[test]
    fn rejects_malformed_authorization_headers() {
        for header in [
            "Bearer x",
            "test",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam, SignedHeaders=host, \
             Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/iam/aws4_request, SignedHeaders=host",
        ] {
            assert!(
                matches!(
                    Authorization::parse(header),
                    Err(SignatureProblem::Incomplete(_))
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn canonicalises_paths_queries_and_header_values() {
        assert_eq!(canonical_path("/"), "/");
        assert_eq!(canonical_path("/a b/%2F"), "/a%20b/%252F");
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(collapse_spaces("  a   b c "), "a b c");
        // A broken escape is kept as text (and encoded), not an error.
        assert_eq!(canonical_query("k=a%2"), "k=a%252");
    }
}
