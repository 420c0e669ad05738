//! Hostile input and hostile settings against the real binary: oversize and malformed-heavy
//! events, bad bytes, forged log lines, stalled invocation bodies, and settings that used to
//! be echoed, misread or accepted. One test per row of the adversarial review.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::hostile::dead_letters;

/// Runs the binary with `env` (and a port) until it exits, at most 20 s: exit success and
/// everything it wrote.
fn start_up(env: &[(&str, &str)]) -> (bool, String, Duration) {
    let port = free_port().to_string();
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", &port)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut text = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            return (status.success(), text, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 20 s with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Settings, the name the error must give, and a secret it must not print.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);

/// Settings that used to be echoed, misread as file names, accepted with a broken value, or
/// that blew up memory now stop start-up quickly, naming the variable (and the header) and
/// never printing the secret.
#[test]
fn bad_settings_stop_start_up_naming_the_variable_never_the_secret() {
    let url = ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit");
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let mut bomb = format!("a0: &a0 [{}]\n", vec!["x"; 20_000].join(", "));
    for i in 1..6 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    bomb.push_str("routes: [*a5]\n");
    let cases: Vec<Case> = vec![
        // Row 5: a client key that is not a file: never printed, never made a path.
        (
            vec![url, ("AUDIT_WEBHOOK_CLIENT_CERT", cert), ("AUDIT_WEBHOOK_CLIENT_KEY", "MIIEvQIBADANBgk-k3y-s3cret")],
            "AUDIT_WEBHOOK_CLIENT_KEY",
            "k3y-s3cret",
        ),
        (
            vec![url, ("AUDIT_WEBHOOK_CLIENT_CERT", cert), ("AUDIT_WEBHOOK_CLIENT_KEY", "\u{feff}\"MIIE-k3y-s3cret\"")],
            "AUDIT_WEBHOOK_CLIENT_KEY",
            "k3y-s3cret",
        ),
        (vec![url, ("AUDIT_WEBHOOK_CA", "MIIC-ca-s3cret")], "AUDIT_WEBHOOK_CA", "ca-s3cret"),
        // Row 6: an inline document after a BOM or `---`: parsed, its errors without secrets.
        (
            vec![(
                "AUDIT_ROUTES",
                "\u{feff}---\nroutes:\n- name: a\n  webhook: {url: 'https://u:pa55-s3cret@a/?sig=s1g-s3cret', headers: {X-K: 7}, format: xml}\n",
            )],
            "AUDIT_ROUTES",
            "s3cret",
        ),
        // Row 11: a token with a line break inside.
        (vec![url, ("AUDIT_WEBHOOK_BEARER_TOKEN", "t0k3n\nt0k3n-s3cret")], "AUDIT_WEBHOOK_BEARER_TOKEN", "s3cret"),
        (vec![url, ("AUDIT_WEBHOOK_PASSWORD", "p\nw-s3cret"), ("AUDIT_WEBHOOK_USERNAME", "u")], "AUDIT_WEBHOOK_PASSWORD", "s3cret"),
        // Row 12: headers that frame the request.
        (vec![url, ("AUDIT_WEBHOOK_HEADERS", r#"{"Content-Length":"5"}"#)], "Content-Length", "\u{0}"),
        (vec![url, ("AUDIT_WEBHOOK_HEADERS", r#"{"Transfer-Encoding":"chunked"}"#)], "Transfer-Encoding", "\u{0}"),
        (vec![url, ("AUDIT_WEBHOOK_HEADERS", r#"{"Host":"evil"}"#)], "Host", "\u{0}"),
        (vec![url, ("AUDIT_WEBHOOK_HEADERS", r#"{"Connection":"close"}"#)], "Connection", "\u{0}"),
        // Row 14: a routes document of aliases.
        (vec![("AUDIT_ROUTES", bomb.as_str())], "AUDIT_ROUTES", "\u{0}"),
        // Row 15: a duration past its bound.
        (vec![url, ("AUDIT_DELIVERY_DEADLINE", "400000000000y")], "AUDIT_DELIVERY_DEADLINE", "\u{0}"),
    ];
    for (env, name, secret) in cases {
        let (success, text, took) = start_up(&env);
        assert!(!success, "{name}: started with {env:?}");
        assert!(text.contains(name), "{name} not named: {text}");
        assert!(!text.contains(secret), "{secret} printed: {text}");
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
    }
}

/// Row 11: a bearer token with a trailing newline (Key Vault, `echo`) is sent trimmed.
#[tokio::test]
async fn a_token_with_a_trailing_newline_is_sent_trimmed() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_BEARER_TOKEN", "t0k3n-value\n"),
    ])
    .await;
    let (bodies, _) = audit_bodies("tok", 1, 1, 0);
    assert_eq!(handler.invoke_bodies(&bodies, "0").await.status, 200);
    let batch = &receiver.receiver.batches()[0];
    let auth = batch.headers.iter().find(|(n, _)| n == "authorization");
    assert_eq!(auth.map(|(_, v)| v.as_str()), Some("Bearer t0k3n-value"));
}

/// Row 3: one event with more records than allowed next to a normal one: that event is
/// dead-lettered (its bytes exact), the neighbour delivered, the answer 200, never a 4xx.
#[tokio::test]
async fn an_event_with_too_many_records_is_dead_lettered_not_refused() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (mut bodies, events) = audit_bodies("neighbour", 1, 3, 0);
    let huge = envelope(vec![json!({}); 50_001]);
    bodies.push(huge.clone());
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &events);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("AUDIT_MAX_RECORDS_PER_EVENT"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].raw_bytes().unwrap(), huge);
}

/// Row 4: events full of small malformed, quote-heavy records: one dead letter per event
/// holding its bytes once (the answer stays near the request's size), warnings rate-limited,
/// every log line bounded.
#[tokio::test]
async fn malformed_heavy_batch_has_bounded_dead_letters_and_logs() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let bad = record("kube-audit", &"\"\\\"".repeat(40));
    let bodies: Vec<Vec<u8>> = (0..20).map(|_| envelope(vec![bad.clone(); 800])).collect();
    let request: usize = bodies.iter().map(Vec::len).sum();
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 20);
    for (item, body) in dead.iter().zip(&bodies) {
        assert_eq!(item.raw_bytes().unwrap(), *body);
        assert_eq!(item.omitted_records, Some(800 - item.records.len() as u64));
    }
    assert!(
        answer.body.len() < request * 3 / 2 + 64 * 1024,
        "answer {} bytes for a {request}-byte request",
        answer.body.len()
    );
    let log = handler.log();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    assert!(warnings <= 6, "{warnings} warnings:\n{log}");
    assert!(log.contains("suppressed"), "{log}");
    assert!(
        log.lines().all(|l| l.len() <= 8 * 1024),
        "a log line over 8 KiB"
    );
}

/// Row 16: a record `category` with a line break and a forged log line: escaped, so no log
/// line starts with the forged text.
#[tokio::test]
async fn control_characters_in_input_never_forge_log_lines() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let forged = "FORGED ERROR admin logged in";
    let body = envelope(vec![
        record(&format!("kube-audit\n{forged}"), "x"),
        json!({"category": "kube-audit", "properties": {"log": format!("\n{forged}\r\n{forged}")}}),
        json!({"records": 1, "category": format!("\u{1b}[2J{forged}")}),
    ]);
    let answer = handler.invoke_bodies(&[body], "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let log = handler.log();
    assert!(log.contains(forged), "the input is quoted: {log}");
    for line in log.lines() {
        assert!(
            !line.trim_start().starts_with("FORGED"),
            "forged line: {line}"
        );
        assert!(!line.contains('\u{1b}'), "raw escape: {line}");
    }
    // The host logs each `Logs` entry as a line of its own.
    for entry in &answer.result.unwrap().logs {
        assert!(!entry.chars().any(char::is_control), "{entry:?}");
    }
}

/// Row 17: one record with an invalid UTF-8 byte or a raw NUL among valid records: only that
/// record is set aside; the dead letter keeps the event's bytes exactly.
#[tokio::test]
async fn a_bad_byte_sets_aside_only_its_record() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    for (n, bad) in [&[0xffu8][..], &[0x00], &[0xef, 0xbb, 0xbf]]
        .iter()
        .enumerate()
    {
        let (good, events) = audit_bodies(&format!("bytes{n}"), 1, 2, 0);
        let text = String::from_utf8(good[0].clone()).unwrap();
        // A third record whose log holds the bad bytes, between the two good ones.
        let split = text.find("},{").unwrap() + 2;
        let mut body = text.as_bytes()[..split].to_vec();
        body.extend_from_slice(br#"{"category":"kube-audit","properties":{"log":"{"#);
        body.extend_from_slice(bad);
        body.extend_from_slice(br#"}"}},"#);
        body.extend_from_slice(&text.as_bytes()[split..]);
        let answer = handler.invoke_bodies(&[body.clone()], "0").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let dead = dead_letters(&answer);
        assert_eq!(dead.len(), 1, "{bad:?}");
        assert_eq!(dead[0].records.len(), 1);
        assert_eq!(dead[0].records[0].index, 1);
        assert_eq!(dead[0].raw_bytes().unwrap(), body);
        let received: Vec<_> = receiver
            .receiver
            .events()
            .into_iter()
            .filter(|e| {
                e["auditID"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("bytes{n}-"))
            })
            .collect();
        assert_same_events(received, &events);
    }
}

/// Row 13: connections that send part of a large body and stall are answered 500 after the
/// read timeout (their memory freed), and SIGTERM ends the process within the grace period
/// even while one stalls.
#[tokio::test]
async fn stalled_invocation_bodies_time_out_and_sigterm_exits_promptly() {
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit"),
        ("AUDIT_BODY_READ_TIMEOUT", "1s"),
    ])
    .await;
    let stall = |port: u16| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "POST /EventHubForwarder HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            100 * 1024 * 1024
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&vec![b' '; 1024 * 1024]).unwrap();
        stream
    };
    let started = Instant::now();
    let mut stream = stall(handler.port);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap();
    let status = String::from_utf8_lossy(&answer[..n]);
    assert!(status.starts_with("HTTP/1.1 500"), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that would take a minute to time out; the grace period is what ends it.
    let mut handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit"),
        ("AUDIT_BODY_READ_TIMEOUT", "60s"),
        ("AUDIT_SHUTDOWN_GRACE", "1s"),
    ])
    .await;
    let _held = stall(handler.port);
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    handler.terminate();
    let exit = handler.wait_exit(Duration::from_secs(10));
    assert!(exit.is_some(), "still running 10 s after SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}
