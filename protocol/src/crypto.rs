//! KMS session encryption (SPEC §7): data-key split, AES-256-GCM payload sealing with the
//! `nonce || ciphertext || tag` wire format, the nonce sources of both sides, and the KMS
//! encryption context.
//!
//! Makes no KMS call (the driver does) and draws no OS randomness: client nonces come from a
//! PRNG seeded by the caller. The cipher sits behind [`PayloadCipher`] so simulations can use
//! [`TestCipher`] (`testkit` feature or tests); shipped code and vectors use [`Aes256GcmCipher`].

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use thiserror::Error;

/// Why a payload could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// KMS returned a plaintext key of the wrong size (KMS or the caller is at fault).
    #[error("data key of {len} bytes, expected {DATA_KEY_LEN}")]
    DataKeyLength {
        /// Its length.
        len: usize,
    },
    /// An encrypted payload too short to hold the nonce and tag (invalid message from the peer).
    #[error("encrypted payload of {len} bytes is shorter than the {OVERHEAD}-byte nonce and tag")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// Wrong key, or bytes changed in transit (plugin: `cipher: message authentication failed`).
    #[error("encrypted payload failed authentication")]
    AuthenticationFailed,
    /// More plaintext than AES-GCM can seal under one nonce (our misuse).
    #[error("plaintext of {len} bytes is too long to encrypt")]
    PlaintextTooLong {
        /// Its length.
        len: usize,
    },
}

/// The 64-byte plaintext data key from KMS GenerateDataKey (`Plaintext`; the session's
/// `DataKey` also carries the `CiphertextBlob`). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PlaintextDataKey([u8; DATA_KEY_LEN]);

impl PlaintextDataKey {
    /// Wraps the `Plaintext` of GenerateDataKey; it must be 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key = bytes
            .try_into()
            .map_err(|_| CryptoError::DataKeyLength { len: bytes.len() })?;
        Ok(Self(key))
    }

    /// The client's keys: encrypt with `key[32..64]`, decrypt with `key[0..32]` (plugin
    /// `src/encryption/encrypter.go` `generateEncryptionKey`).
    pub fn client_keys(&self) -> SessionKeys {
        SessionKeys {
            encrypt: self.upper(),
            decrypt: self.lower(),
        }
    }

    /// The agent's keys, the mirror image: encrypt with `key[0..32]`, decrypt with `key[32..64]`
    /// (agent `agent/session/crypto/blockcipher.go` `UpdateEncryptionKey`).
    pub fn agent_keys(&self) -> SessionKeys {
        SessionKeys {
            encrypt: self.lower(),
            decrypt: self.upper(),
        }
    }

    fn lower(&self) -> AeadKey {
        let mut key = [0; KEY_LEN];
        key.copy_from_slice(&self.0[..KEY_LEN]);
        AeadKey(key)
    }

    fn upper(&self) -> AeadKey {
        let mut key = [0; KEY_LEN];
        key.copy_from_slice(&self.0[KEY_LEN..]);
        AeadKey(key)
    }
}

impl fmt::Debug for PlaintextDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextDataKey(<redacted>)")
    }
}

/// One 32-byte AES-256 key. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AeadKey([u8; KEY_LEN]);

impl AeadKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

/// One side's pair of keys, as split from the data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    encrypt: AeadKey,
    decrypt: AeadKey,
}

impl SessionKeys {
    /// The key this side seals with.
    pub fn encrypt_key(&self) -> &AeadKey {
        &self.encrypt
    }

    /// The key this side opens the peer's payloads with.
    pub fn decrypt_key(&self) -> &AeadKey {
        &self.decrypt
    }
}

/// An AEAD with a 12-byte nonce and 16-byte tag, no associated data.
pub trait PayloadCipher {
    /// Returns `ciphertext || tag` (the caller prepends the nonce).
    fn seal(
        &self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError>;

    /// Opens `ciphertext || tag`; [`CryptoError::AuthenticationFailed`] when it does not verify.
    fn open(
        &self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError>;
}

/// AES-256-GCM, no associated data: what both official sides use (plugin
/// `src/encryption/encrypter.go`, agent `agent/session/crypto/blockcipher.go`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Aes256GcmCipher;

impl PayloadCipher for Aes256GcmCipher {
    fn seal(
        &self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        Aes256Gcm::new(key.as_bytes().into())
            .encrypt(Nonce::from_slice(nonce), plaintext)
            .map_err(|_| CryptoError::PlaintextTooLong {
                len: plaintext.len(),
            })
    }

    fn open(
        &self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        Aes256Gcm::new(key.as_bytes().into())
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

#[cfg(any(test, feature = "testkit"))]
/// A transparent stand-in for simulations: the "ciphertext" is the plaintext XOR `0x5a`, the tag
/// the first 16 bytes of SHA-256(key || nonce || ciphertext). It still fails on a wrong key or
/// altered bytes, like the real cipher. Provides no confidentiality: never ship it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestCipher;

#[cfg(any(test, feature = "testkit"))]
impl TestCipher {
    fn tag(key: &AeadKey, nonce: &[u8; NONCE_LEN], body: &[u8]) -> [u8; TAG_LEN] {
        use sha2::{Digest as _, Sha256};

        let digest = Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update(nonce)
            .chain_update(body)
            .finalize();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }
}

#[cfg(any(test, feature = "testkit"))]
impl PayloadCipher for TestCipher {
    fn seal(
        &self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut sealed: Vec<u8> = plaintext
            .iter()
            .map(|byte| byte ^ TEST_CIPHER_MASK)
            .collect();
        let tag = Self::tag(key, nonce, &sealed);
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    fn open(
        &self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let split = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::AuthenticationFailed)?;
        let (body, tag) = sealed.split_at(split);
        if Self::tag(key, nonce, body) != tag {
            return Err(CryptoError::AuthenticationFailed);
        }
        Ok(body.iter().map(|byte| byte ^ TEST_CIPHER_MASK).collect())
    }
}

/// Seals `plaintext` under `nonce`: returns `nonce || ciphertext || tag`.
pub fn seal_with_nonce<C: PayloadCipher + ?Sized>(
    cipher: &C,
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let sealed = cipher.seal(key, nonce, plaintext)?;
    let mut wire = Vec::with_capacity(NONCE_LEN + sealed.len());
    wire.extend_from_slice(nonce);
    wire.extend_from_slice(&sealed);
    Ok(wire)
}

/// Opens `nonce || ciphertext || tag`. Anything under 28 bytes is [`CryptoError::TooShort`]
/// (the agent's own decryption would panic on it, SPEC §7.5).
pub fn open_wire<C: PayloadCipher + ?Sized>(
    cipher: &C,
    key: &AeadKey,
    wire: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if wire.len() < OVERHEAD {
        return Err(CryptoError::TooShort { len: wire.len() });
    }
    let (nonce, sealed) = wire.split_at(NONCE_LEN);
    // `split_at(NONCE_LEN)` yields exactly NONCE_LEN bytes.
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("nonce slice is NONCE_LEN bytes");
    cipher.open(key, nonce, sealed)
}

/// Where nonces come from: the client's seeded PRNG or the agent's counter.
#[derive(Debug, Clone)]
pub struct NonceSource(NonceKind);

#[derive(Debug, Clone)]
enum NonceKind {
    /// 12 bytes per message from a PRNG (the plugin reads `crypto/rand`; any unrepeated nonce
    /// is valid for the agent).
    Random(Xoshiro256StarStar),
    /// A 96-bit little-endian counter of three `u32` words, returned then incremented with carry
    /// (agent `agent/session/crypto/nonce.go` `GenerateNonce`).
    Counter([u32; 3]),
}

impl NonceSource {
    /// The client's source: xoshiro256** seeded from `seed` (the caller seeds it from the OS).
    pub fn client(seed: u64) -> Self {
        Self(NonceKind::Random(Xoshiro256StarStar::seed_from_u64(seed)))
    }

    /// The agent's source, starting at `initial_state` (the agent draws it at random; `kms.json`
    /// `agent_initial_nonce_state_u32_le`).
    pub fn agent(initial_state: [u32; 3]) -> Self {
        Self(NonceKind::Counter(initial_state))
    }

    /// The next nonce.
    pub fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        let mut nonce = [0; NONCE_LEN];
        match &mut self.0 {
            NonceKind::Random(rng) => {
                nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
                nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes()[..4]);
            }
            NonceKind::Counter(state) => {
                for (bytes, word) in nonce.chunks_exact_mut(4).zip(state.iter()) {
                    bytes.copy_from_slice(&word.to_le_bytes());
                }
                for word in state.iter_mut() {
                    *word = word.wrapping_add(1);
                    if *word != 0 {
                        break;
                    }
                }
            }
        }
        nonce
    }
}

/// xoshiro256** (Blackman and Vigna), seeded through splitmix64: deterministic; nonces need only
/// be unique under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Xoshiro256StarStar {
    state: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Expands `seed` with splitmix64 into the 256-bit state.
    fn seed_from_u64(seed: u64) -> Self {
        let mut mix = seed;
        let mut state = [0; 4];
        for word in &mut state {
            mix = mix.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = mix;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *word = z ^ (z >> 31);
        }
        Self { state }
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

/// One side's payload encryption once keys are agreed: seals with its encrypt key and fresh
/// nonces, opens the peer's payloads with its decrypt key.
#[derive(Debug, Clone)]
pub struct PayloadCrypto<C = Aes256GcmCipher> {
    cipher: C,
    keys: SessionKeys,
    nonces: NonceSource,
}

impl PayloadCrypto<Aes256GcmCipher> {
    /// The client's AES-GCM encryption for `data_key`, nonces from `rng_seed`.
    pub fn client(data_key: &PlaintextDataKey, rng_seed: u64) -> Self {
        Self::new(
            Aes256GcmCipher,
            data_key.client_keys(),
            NonceSource::client(rng_seed),
        )
    }

    /// The agent's AES-GCM encryption for `data_key`, counter nonces from `initial_nonce`.
    pub fn agent(data_key: &PlaintextDataKey, initial_nonce: [u32; 3]) -> Self {
        Self::new(
            Aes256GcmCipher,
            data_key.agent_keys(),
            NonceSource::agent(initial_nonce),
        )
    }
}

impl<C: PayloadCipher> PayloadCrypto<C> {
    /// Any cipher, keys and nonce source.
    pub fn new(cipher: C, keys: SessionKeys, nonces: NonceSource) -> Self {
        Self {
            cipher,
            keys,
            nonces,
        }
    }

    /// `nonce || ciphertext || tag` of `plaintext`, under the next nonce.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = self.nonces.next_nonce();
        seal_with_nonce(&self.cipher, self.keys.encrypt_key(), &nonce, plaintext)
    }

    /// The plaintext of a payload the peer encrypted.
    pub fn decrypt(&self, wire: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_wire(&self.cipher, self.keys.decrypt_key(), wire)
    }

    /// Client side of the challenge (SPEC §7.6): decrypts the agent's challenge and encrypts the
    /// same bytes with our key and a new nonce.
    pub fn answer_challenge(&mut self, challenge: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let plaintext = self.decrypt(challenge)?;
        self.encrypt(&plaintext)
    }

    /// The keys in use.
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }
}

/// The KMS encryption context of the client's GenerateDataKey and the agent's Decrypt (SPEC
/// §7.2, §7.8): session id and target id, plus the agent's random challenge when one was sent
/// and acknowledged (an empty challenge counts as none).
pub fn encryption_context(
    session_id: &str,
    target_id: &str,
    random_challenge: Option<&str>,
) -> BTreeMap<String, String> {
    let mut context = BTreeMap::new();
    context.insert(CONTEXT_SESSION_ID.to_owned(), session_id.to_owned());
    context.insert(CONTEXT_TARGET_ID.to_owned(), target_id.to_owned());
    if let Some(challenge) = random_challenge.filter(|challenge| !challenge.is_empty()) {
        context.insert(CONTEXT_RANDOM_CHALLENGE.to_owned(), challenge.to_owned());
    }
    context
}

/// Plaintext data key size asked of GenerateDataKey `NumberOfBytes` (plugin
/// `src/encryption/kmsservice.go` `KMSKeySizeInBytes`).
pub const DATA_KEY_LEN: usize = 64;
/// AES-256 key size; each side takes one half of the data key.
pub const KEY_LEN: usize = 32;
/// GCM nonce size (plugin `encrypter.go` `nonceSize`, agent `blockcipher.go`).
pub const NONCE_LEN: usize = 12;
/// GCM tag size.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted payload adds: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Encryption-context key of the session id (plugin `encrypter.go`, agent `blockcipher.go`).
pub const CONTEXT_SESSION_ID: &str = "aws:ssm:SessionId";
/// Encryption-context key of the target (instance) id (plugin `encrypter.go`, agent
/// `blockcipher.go`).
pub const CONTEXT_TARGET_ID: &str = "aws:ssm:TargetId";
/// Encryption-context key of the agent's random challenge (agent `blockcipher.go`).
pub const CONTEXT_RANDOM_CHALLENGE: &str = "aws:ssm:RandomChallenge";
#[cfg(any(test, feature = "testkit"))]
/// Byte mask of [`TestCipher`].
const TEST_CIPHER_MASK: u8 = 0x5a;

#[cfg(test)]
mod tests {
    use super::*;

    fn data_key() -> PlaintextDataKey {
        let bytes: Vec<u8> = (0..64).collect();
        PlaintextDataKey::from_slice(&bytes).unwrap()
    }

    #[test]
    fn rejects_data_key_of_wrong_length() {
        assert_eq!(
            PlaintextDataKey::from_slice(&[0; 32]),
            Err(CryptoError::DataKeyLength { len: 32 })
        );
    }

    #[test]
    fn client_and_agent_keys_mirror() {
        let key = data_key();
        assert_eq!(
            key.client_keys().encrypt_key(),
            key.agent_keys().decrypt_key()
        );
        assert_eq!(
            key.client_keys().decrypt_key(),
            key.agent_keys().encrypt_key()
        );
        assert_eq!(key.client_keys().decrypt_key().as_bytes()[0], 0);
        assert_eq!(key.client_keys().encrypt_key().as_bytes()[0], 32);
    }

    #[test]
    fn debug_redacts_keys() {
        let text = format!("{:?} {:?}", data_key(), data_key().client_keys());
        assert!(!text.contains("32"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn agent_counter_carries_into_next_word() {
        let mut nonces = NonceSource::agent([u32::MAX, 7, 0]);
        assert_eq!(
            nonces.next_nonce(),
            [0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(nonces.next_nonce(), [0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn client_nonces_are_deterministic_per_seed_and_distinct() {
        let draw = |seed| {
            let mut nonces = NonceSource::client(seed);
            (0..100).map(|_| nonces.next_nonce()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let mut unique = draw(1);
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 100);
    }

    #[test]
    fn client_and_agent_round_trip_both_ways() {
        let mut client = PayloadCrypto::client(&data_key(), 7);
        let mut agent = PayloadCrypto::agent(&data_key(), [1, 2, 3]);
        let wire = client.encrypt(b"ls\r").unwrap();
        assert_eq!(wire.len(), 3 + OVERHEAD);
        assert_eq!(agent.decrypt(&wire).unwrap(), b"ls\r");
        let reply = agent.encrypt(b"out").unwrap();
        assert_eq!(client.decrypt(&reply).unwrap(), b"out");
        assert_eq!(
            agent.decrypt(&reply),
            Err(CryptoError::AuthenticationFailed),
            "own key cannot open"
        );
    }

    #[test]
    fn rejects_payload_shorter_than_nonce_and_tag() {
        let client = PayloadCrypto::client(&data_key(), 7);
        for len in [0, 11, 12, 27] {
            assert_eq!(
                client.decrypt(&vec![0; len]),
                Err(CryptoError::TooShort { len })
            );
        }
        assert_eq!(
            client.decrypt(&[0; 28]),
            Err(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn test_cipher_round_trips_and_detects_tampering() {
        let keys = data_key().client_keys();
        let mut sender = PayloadCrypto::new(TestCipher, keys.clone(), NonceSource::client(3));
        let receiver = PayloadCrypto::new(
            TestCipher,
            SessionKeys {
                encrypt: keys.decrypt_key().clone(),
                decrypt: keys.encrypt_key().clone(),
            },
            NonceSource::client(4),
        );
        let mut wire = sender.encrypt(b"hello").unwrap();
        assert_eq!(receiver.decrypt(&wire).unwrap(), b"hello");
        wire[NONCE_LEN] ^= 1;
        assert_eq!(
            receiver.decrypt(&wire),
            Err(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn context_includes_challenge_only_when_present() {
        assert_eq!(encryption_context("s", "i", None).len(), 2);
        assert_eq!(encryption_context("s", "i", Some("")).len(), 2);
        let context = encryption_context("s", "i", Some("abc"));
        assert_eq!(
            context.get(CONTEXT_RANDOM_CHALLENGE).map(String::as_str),
            Some("abc")
        );
    }
}
