//! EC2 Instance Connect against moto: postern's own calls (`InstanceConnectClient`: the
//! availability zone from DescribeInstances, then SendSSHPublicKey with an ephemeral key) and
//! `postern ssh --push-key` (the real binary) up to the ssh it runs, here a script that records
//! its arguments and the key file it was given.
//!
//! What moto really does: DescribeInstances knows only the instances it launched
//! (InvalidInstanceID.NotFound otherwise), while its SendSSHPublicKey checks nothing and
//! answers `Success: true` with a fixed request id for any instance, user and key
//! (moto/ec2instanceconnect/models.py).

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use aws_sdk_ec2::types::InstanceType;
use postern::aws::{AwsContext, InstanceConnectClient};
use postern::ephemeral_key::EphemeralKey;

use crate::support::home::Home;
use crate::support::moto::Moto;
use crate::support::process::{run, text};

const REGION: &str = "eu-west-1";
/// An Amazon Linux image from moto's default set.
const IMAGE: &str = "ami-760aaa0f";
/// The request id moto's SendSSHPublicKey always answers with.
const MOTO_REQUEST_ID: &str = "example-2a47-4c91-9700-e37e85162cb6";
const LIMIT: Duration = Duration::from_secs(120);

/// Launches one instance; its id and availability zone.
async fn launch(moto: &Moto) -> (String, String) {
    let output = aws_sdk_ec2::Client::new(&moto.sdk(REGION))
        .run_instances()
        .image_id(IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RunInstances: {e:?}\n{}", moto.log()));
    let instance = &output.instances()[0];
    let zone = instance
        .placement()
        .and_then(|p| p.availability_zone())
        .expect("moto places the instance");
    (
        instance.instance_id().expect("an id").to_owned(),
        zone.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_ssh_public_key_through_postern_succeeds_against_moto() {
    let moto = Moto::start();
    let (instance, zone) = launch(&moto).await;
    let context = AwsContext {
        sdk: moto.sdk(REGION),
        region: REGION.to_owned(),
        profile: None,
        ssm_endpoint: None,
    };
    let client = InstanceConnectClient::new(&context);
    assert_eq!(
        client.availability_zone(&instance).await.expect("the zone"),
        zone
    );
    let key = EphemeralKey::generate("moto-test").expect("a key");
    let pushed = client
        .send_ssh_public_key(&instance, "ec2-user", key.public_openssh(), &zone)
        .await
        .unwrap_or_else(|e| panic!("SendSSHPublicKey: {e}\n{}", moto.log()));
    assert_eq!(pushed.request_id.as_deref(), Some(MOTO_REQUEST_ID));

    // moto's DescribeInstances knows its instances only...
    let unknown = "i-0000000000000dead";
    let err = client
        .availability_zone(unknown)
        .await
        .expect_err("moto does not know it");
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"), "{err}");
    // ...but its SendSSHPublicKey accepts any instance (the real service would answer
    // EC2InstanceNotFoundException, as the emulator does).
    let lenient = client
        .send_ssh_public_key(unknown, "ec2-user", key.public_openssh(), &zone)
        .await
        .expect("moto checks nothing");
    assert_eq!(lenient.request_id.as_deref(), Some(MOTO_REQUEST_ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_push_key_runs_ssh_with_the_pushed_key_against_moto() {
    let moto = Moto::start();
    let (instance, _) = launch(&moto).await;
    let home = Home::new(None);
    let tmp = tempfile::tempdir().expect("TMPDIR");
    let seen = tempfile::tempdir().expect("a dir for the fake ssh's records");
    // The "ssh": records its arguments and the mode of the key it got, then exits 7.
    let script = seen.path().join("fake-ssh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {dir}/args\nwhile [ $# -gt 0 ]; do\n  \
             if [ \"$1\" = -i ]; then stat -c %a \"$2\" > {dir}/key-mode; fi\n  shift\ndone\n\
             exit 7\n",
            dir = seen.path().display()
        ),
    )
    .expect("write the fake ssh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = script.display().to_string();

    let mut command = moto.postern(
        &home,
        REGION,
        &["ssh", "--push-key", "--ssh-program", &script, &instance],
    );
    command.env("TMPDIR", tmp.path());
    let out = run(command, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(7),
        "ssh's exit code; stderr: {}\nmoto: {}",
        text(&out.stderr),
        moto.log()
    );
    let args = std::fs::read_to_string(seen.path().join("args")).expect("the fake ssh ran");
    let args: Vec<&str> = args.lines().collect();
    let key_at = args.iter().position(|a| *a == "-i").expect("-i KEY");
    let key = args[key_at + 1];
    assert!(
        key.starts_with(&format!("{}/postern-key-", tmp.path().display()))
            && key.ends_with("/id_ed25519"),
        "{key}"
    );
    assert_eq!(args[key_at + 2..key_at + 4], ["-o", "IdentitiesOnly=yes"]);
    assert!(
        args[0] == "-o" && args[1].starts_with("ProxyCommand="),
        "{args:?}"
    );
    assert!(args[1].ends_with(" ssh-proxy %h %p"), "{args:?}");
    assert_eq!(args[key_at + 4], format!("ec2-user@{instance}"));
    let mode = std::fs::read_to_string(seen.path().join("key-mode")).expect("key mode");
    assert_eq!(mode, "600\n");
    assert!(!std::path::Path::new(key).exists(), "the key is removed");
    assert_eq!(std::fs::read_dir(tmp.path()).expect("TMPDIR").count(), 0);
}
