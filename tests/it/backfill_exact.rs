//! `backfill` keeps what it cannot deliver exactly and bounded, and reads on from a
//! checkpoint only when the checkpoint is the blob's: against Azurite and a real receiver.

use object_store::path::Path as BlobPath;
use object_store::ObjectStore as _;
use secrecy::SecretString;
use serde_json::Value;

use aks_audit_forwarder::deadletter::from_json_lines;
use aks_audit_forwarder::tools::storage::{open, StorageArgs};

use super::azurite::Azurite;
use super::helpers::{audit_event, cluster_id, start_receiver};
use super::tools::{line, text, tool, CONTAINER};

/// Issue 18 row 20: a line with invalid UTF-8 is dead-lettered with its exact bytes (base64),
/// a 2 MB line of control bytes makes a dead letter about 4/3 its size (not six times, as
/// JSON escapes would), and a rerun refuses the checkpoint once the blob is replaced (offset
/// past its end, or other first bytes), naming the file.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_keeps_exact_bytes_bounded_and_checks_the_checkpoint() {
    let azurite = Azurite::start().await;
    azurite.create_container(CONTAINER).await;
    let conn = azurite.connection_string();
    let store = open(
        &StorageArgs {
            account: None,
            connection_string: Some(SecretString::from(conn.clone())),
            managed_identity: false,
        },
        CONTAINER,
    )
    .unwrap();
    let id = cluster_id("aks1");
    let time = "2026-11-23T07:00:01Z";
    let good = |n: u32| {
        line(
            &id,
            "kube-audit",
            &audit_event(&format!("exact-{n}"), 0),
            time,
        )
    };
    let mut invalid = br#"{"category":"kube-audit","properties":{"log":"caf"#.to_vec();
    invalid.extend_from_slice(b"\xe9 \xff\xfe\"}}");
    let control = vec![0x01u8; 2_000_000];
    let mut blob = format!("{}\n", good(1)).into_bytes();
    blob.extend_from_slice(&invalid);
    blob.push(b'\n');
    blob.extend_from_slice(&control);
    blob.push(b'\n');
    blob.extend_from_slice(format!("{}\n", good(2)).as_bytes());
    let path = format!("resourceId={id}/y=2026/m=11/d=23/h=07/m=00/PT1H.json");
    let put = |bytes: Vec<u8>| {
        let store = &store;
        let path = BlobPath::from(path.clone());
        async move { store.put(&path, bytes.into()).await.unwrap() }
    };
    put(blob.clone()).await;
    let receiver = start_receiver().await;
    let url = receiver.url("/k8s_audit");
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let checkpoint = dir.path().join("cp.json");
    let settings = [
        ("AUDIT_WEBHOOK_URL", url.as_str()),
        ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str()),
    ];
    let args = [
        "backfill",
        "--deadletter-out",
        dead.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    let output = tool(&args, &settings).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(receiver.receiver.events().len(), 2);
    let written = std::fs::read(&dead).unwrap();
    assert!(
        written.len() < control.len() * 3 / 2,
        "{} bytes of dead letters for a {}-byte line",
        written.len(),
        control.len()
    );
    let items = from_json_lines(std::str::from_utf8(&written).unwrap()).unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].raw_bytes().unwrap(), invalid);
    assert!(items[0].raw.is_none(), "invalid UTF-8 kept as text");
    assert_eq!(items[1].raw_bytes().unwrap(), control);
    let saved: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(
        saved["identities"][&path]["size"],
        blob.len() as u64,
        "{saved}"
    );

    // The blob grew by an append: read on, the one new line delivered.
    let mut grown = blob.clone();
    grown.extend_from_slice(format!("{}\n", good(3)).as_bytes());
    put(grown.clone()).await;
    let output = tool(&args, &settings).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(receiver.receiver.events().len(), 3);

    // Replaced by a shorter blob, or one with other first bytes: refused.
    for replaced in [
        format!("{}\n", good(4)).into_bytes(),
        [b"{\"other\":1}\n".as_slice(), &grown].concat(),
    ] {
        put(replaced).await;
        let output = tool(&args, &settings).output().unwrap();
        let out = text(&output);
        assert!(!output.status.success(), "{out}");
        assert!(
            out.contains("is not the checkpoint of") && out.contains("cp.json"),
            "{out}"
        );
    }
    assert_eq!(receiver.receiver.events().len(), 3);
}
