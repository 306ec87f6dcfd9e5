//! KMS-encrypted sessions against moto's KMS, an implementation we did not write: a client
//! core and an agent core of the protocol crate complete the encrypted handshake (SPEC.md §7)
//! with the data key postern's `KmsClient` asked moto for, and the agent's Decrypt of that
//! blob done by moto. This checks that moto accepts our GenerateDataKey request shape (64
//! bytes, no KeySpec, the three-key encryption context) and that its answer is what the
//! handshake needs. moto binds the encryption context into the blob, so a Decrypt with
//! another TargetId fails as real KMS does and the session fails cleanly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::moto::Moto;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use postern::aws::{AwsContext, KmsClient};
use postern_protocol::{
    AgentConfig, DataKey, Event, KmsContext, KmsRequest, Session, SessionConfig, SessionType,
};

const REGION: &str = "eu-west-1";
const ALIAS: &str = "alias/session-manager";
const SESSION_ID: &str = "alice-0123456789abcdef0";
const TARGET: &str = "i-0123456789abcdef0";
const BANNER: &str = "This session is encrypted using AWS KMS.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_session_completes_with_data_keys_from_moto() {
    let (moto, kms, _) = moto_with_key().await;
    let client_kms = postern_kms(&moto);

    let mut run = Run::new(TARGET);
    let outcome = run.drive(&client_kms, &kms).await;
    let Outcome::Ready { encrypted, banner } = outcome else {
        panic!(
            "the session did not get ready: {outcome:?}\nmoto log:\n{}",
            moto.log()
        );
    };
    assert!(encrypted, "the handshake must have switched encryption on");
    assert_eq!(banner.as_deref(), Some(BANNER));

    // The request postern sent: the alias verbatim and the three-key context.
    let asked = run
        .generate_requests
        .first()
        .expect("GenerateDataKey asked");
    assert_eq!(asked.0, ALIAS);
    assert_eq!(asked.1["aws:ssm:SessionId"], SESSION_ID);
    assert_eq!(asked.1["aws:ssm:TargetId"], TARGET);
    assert!(
        asked.1.contains_key("aws:ssm:RandomChallenge"),
        "the agent's challenge is acknowledged: {:?}",
        asked.1
    );

    // Data flows both ways through the keys moto issued.
    let up: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let down: Vec<u8> = up.iter().rev().copied().collect();
    let (to_agent, to_client) = run.exchange(&up, &down);
    assert!(to_agent == up, "client→agent bytes differ");
    assert!(to_client == down, "agent→client bytes differ");
    assert!(run.violations.is_empty(), "{:?}", run.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_bound_to_another_target_fails_the_session_at_moto_s_decrypt() {
    let (moto, kms, _) = moto_with_key().await;
    let client_kms = postern_kms(&moto);
    // The client names a target the agent is not (SPEC.md §7.2): the agent's Decrypt uses
    // its own id, the blob was bound to the client's.
    let mut run = Run::with_targets("i-0aaaaaaaaaaaaaaaa", TARGET);
    let outcome = run.drive(&client_kms, &kms).await;
    let Outcome::AgentDecryptFailed(error) = outcome else {
        panic!("expected the agent's Decrypt to fail: {outcome:?}");
    };
    assert!(
        error.contains("InvalidCiphertext"),
        "moto's answer names the cause: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_checks_the_shape_we_rely_on() {
    // A control for the test above: moto does validate GenerateDataKey, so its acceptance of
    // ours means something. KeySpec and NumberOfBytes together are refused, as by real KMS.
    let (moto, kms, key) = moto_with_key().await;
    let both = kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(64)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await;
    let error = both.expect_err("KeySpec with NumberOfBytes must be refused");
    assert!(
        format!("{:?}", error).contains("ValidationException"),
        "{error:?}"
    );

    // An unknown key: postern's error names the operation and moto's code.
    let missing = postern_kms(&moto)
        .generate_data_key("alias/no-such-key", 64, &BTreeMap::new())
        .await
        .expect_err("no such key");
    let shown = missing.to_string();
    assert!(shown.starts_with("GenerateDataKey failed"), "{shown}");
    assert!(shown.contains("NotFoundException"), "{shown}");
}

/// moto with a symmetric key under `ALIAS`: the server, a KMS client on it, the key id.
async fn moto_with_key() -> (Moto, aws_sdk_kms::Client, String) {
    let moto = Moto::start();
    let kms = aws_sdk_kms::Client::new(&moto.sdk(REGION));
    let key = create_key_with_alias(&kms).await;
    (moto, kms, key)
}

/// postern's own KMS client, pointed at moto.
fn postern_kms(moto: &Moto) -> KmsClient {
    KmsClient::new(&AwsContext {
        sdk: moto.sdk(REGION),
        region: REGION.to_owned(),
        profile: None,
        ssm_endpoint: None,
    })
}

/// Creates a symmetric key and `ALIAS` for it; returns the key id.
async fn create_key_with_alias(kms: &aws_sdk_kms::Client) -> String {
    let created = kms.create_key().send().await.expect("CreateKey");
    let key_id = created
        .key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned();
    kms.create_alias()
        .alias_name(ALIAS)
        .target_key_id(&key_id)
        .send()
        .await
        .expect("CreateAlias");
    key_id
}

/// How a handshake run ended.
#[derive(Debug)]
enum Outcome {
    /// The client is ready.
    Ready {
        encrypted: bool,
        banner: Option<String>,
    },
    /// moto refused the agent's Decrypt.
    AgentDecryptFailed(String),
}

/// A client core and an agent core wired back to back, KMS answered by moto.
struct Run {
    client: Session,
    agent: Session,
    generate_requests: Vec<(String, BTreeMap<String, String>)>,
    violations: Vec<String>,
}

impl Run {
    fn new(target: &str) -> Self {
        Self::with_targets(target, target)
    }

    fn with_targets(client_target: &str, agent_target: &str) -> Self {
        let now = Instant::now();
        let mut client = SessionConfig::client("1.2.707.0", 7, 1_700_000_000_000);
        client.kms_context = Some(KmsContext {
            session_id: SESSION_ID.into(),
            target_id: client_target.into(),
        });
        let mut agent =
            AgentConfig::new("3.3.0.0", SessionType::StandardStream, Default::default());
        agent.kms_key_id = Some(ALIAS.into());
        agent.pacing = None;
        let mut agent = SessionConfig::agent(agent, 8, 1_700_000_000_000);
        agent.kms_context = Some(KmsContext {
            session_id: SESSION_ID.into(),
            target_id: agent_target.into(),
        });
        Self {
            client: Session::new(client, now),
            agent: Session::new(agent, now),
            generate_requests: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Moves frames and answers KMS until the client is ready or the agent's Decrypt fails.
    async fn drive(&mut self, client_kms: &KmsClient, kms: &aws_sdk_kms::Client) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let now = Instant::now();
            // Spurious timeouts are harmless; due ones (retransmissions) must fire.
            self.client.handle_timeout(now);
            self.agent.handle_timeout(now);
            self.shuttle(now);
            let mut progressed = false;
            while let Some(event) = self.client.poll_event() {
                progressed = true;
                match event {
                    Event::Ready(info) => {
                        return Outcome::Ready {
                            encrypted: info.encrypted,
                            banner: info.customer_message,
                        };
                    }
                    Event::KmsDataKeyRequired(KmsRequest::GenerateDataKey {
                        key_id,
                        encryption_context,
                    }) => {
                        let answer = client_kms
                            .generate_data_key(&key_id, 64, &encryption_context)
                            .await
                            .map(|key| DataKey {
                                plaintext: key.plaintext,
                                ciphertext_blob: key.ciphertext_blob,
                            })
                            .map_err(|e| e.to_string());
                        self.generate_requests.push((key_id, encryption_context));
                        self.client.provide_data_key(Instant::now(), answer);
                    }
                    Event::Violation(v) => self.violations.push(format!("client: {v:?}")),
                    _ => {}
                }
            }
            while let Some(event) = self.agent.poll_event() {
                progressed = true;
                match event {
                    Event::KmsDataKeyRequired(KmsRequest::Decrypt {
                        key_id,
                        ciphertext_blob,
                        encryption_context,
                    }) => {
                        let answer =
                            decrypt(kms, &key_id, ciphertext_blob.clone(), &encryption_context)
                                .await;
                        match answer {
                            Ok(plaintext) => self.agent.provide_data_key(
                                Instant::now(),
                                Ok(DataKey {
                                    plaintext,
                                    ciphertext_blob,
                                }),
                            ),
                            Err(error) => return Outcome::AgentDecryptFailed(error),
                        }
                    }
                    Event::Violation(v) => self.violations.push(format!("agent: {v:?}")),
                    _ => {}
                }
            }
            if !progressed {
                // Both cores are idle: nothing changes before the earlier of their timers.
                let next = [self.client.poll_timeout(), self.agent.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .map_or(deadline, |t| t.min(deadline));
                tokio::time::sleep_until(next.into()).await;
            }
        }
        panic!("no outcome within 30 s");
    }

    /// Sends `up` from the client and `down` from the agent; returns what each side received.
    fn exchange(&mut self, up: &[u8], down: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut up_at, mut down_at) = (0, 0);
        let (mut to_agent, mut to_client) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        while (to_agent.len() < up.len() || to_client.len() < down.len())
            && Instant::now() < deadline
        {
            let now = Instant::now();
            up_at += self.client.send_output(now, &up[up_at..]);
            down_at += self.agent.send_output(now, &down[down_at..]);
            self.shuttle(now);
            while let Some(event) = self.client.poll_event() {
                match event {
                    Event::Output(bytes) => to_client.extend_from_slice(&bytes),
                    Event::Violation(v) => self.violations.push(format!("client: {v:?}")),
                    _ => {}
                }
            }
            while let Some(event) = self.agent.poll_event() {
                match event {
                    Event::Output(bytes) => to_agent.extend_from_slice(&bytes),
                    Event::Violation(v) => self.violations.push(format!("agent: {v:?}")),
                    _ => {}
                }
            }
            self.client.handle_timeout(now);
            self.agent.handle_timeout(now);
        }
        (to_agent, to_client)
    }

    /// Delivers every pending transmit of each side to the other.
    fn shuttle(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(transmit) = self.client.poll_transmit(now) {
                let _ = self.agent.handle_message(now, &transmit.frame);
                moved = true;
            }
            while let Some(transmit) = self.agent.poll_transmit(now) {
                let _ = self.client.handle_message(now, &transmit.frame);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

/// The agent's KMS Decrypt, by moto.
async fn decrypt(
    kms: &aws_sdk_kms::Client,
    key_id: &str,
    blob: Vec<u8>,
    context: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut call = kms
        .decrypt()
        .key_id(key_id)
        .ciphertext_blob(Blob::new(blob));
    for (key, value) in context {
        call = call.encryption_context(key, value);
    }
    match call.send().await {
        Ok(output) => Ok(output.plaintext.map(|p| p.into_inner()).unwrap_or_default()),
        Err(error) => Err(format!("{:?}", error.into_service_error())),
    }
}
