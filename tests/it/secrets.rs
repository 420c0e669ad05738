//! Every credential form the client sends — a bearer token, basic auth from the username and
//! password settings, basic auth built from the URL's user-info, query values (percent-encoded
//! ones and a query that is only a token), extra header values and the client key — against
//! every output: the log, the host answer, the dead letters, `check-config` and `--help`. A
//! hostile receiver echoes each form back in its error answer, so removing any form from the
//! mask list fails here.

use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::helpers::{audit_bodies, spawn_handler, BIN};
use crate::hostile::dead_letters;
use crate::rogue::{ok, Act, Request, Rogue};

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// What the receiver echoes for Event `k` of the invocation (one Event a request): the
/// request line, the `Authorization` header, the extra header, or the credential inside the
/// `Authorization` header decoded (a receiver logging "user svc, password …").
fn echo(r: &Request, k: usize) -> String {
    let auth = r.header("authorization").unwrap_or("").to_string();
    match k {
        0 => r.line.clone(),
        1 => format!("authorization: {auth}"),
        2 => format!("x-api-key: {}", r.header("x-api-key").unwrap_or("")),
        _ => match auth.split_once(' ') {
            Some(("Basic", encoded)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_default();
                format!("basic credential {}", String::from_utf8_lossy(&decoded))
            }
            Some((_, token)) => format!("token {token}"),
            None => "no credential".into(),
        },
    }
}

/// A receiver refusing Events `mask-0-0` … `mask-0-3` with 400 and an echo each; the rest is
/// taken.
async fn echoing_receiver() -> Rogue {
    Rogue::start(|r, _| {
        let refused = (0..4).find(|k| r.ids.iter().any(|id| *id == format!("mask-0-{k}")));
        match refused {
            Some(k) => Act::Answer(400, Vec::new(), echo(r, k)),
            None if r.ids.is_empty() => Act::Answer(
                400,
                Vec::new(),
                (0..4).map(|k| echo(r, k)).collect::<Vec<_>>().join("\n"),
            ),
            None => ok(),
        }
    })
    .await
}

/// One configuration: its settings, every form of its secrets that must never show, and
/// what the receiver must have seen (so the echo really carried each form).
struct Case {
    settings: Vec<(&'static str, String)>,
    hidden: Vec<String>,
    on_the_wire: Vec<(&'static str, String)>,
    /// How many of the four echoes carry a secret (and so must show `***`).
    masked: usize,
}

fn cases(rogue: &Rogue, key_pem: &str, cert_pem: &str) -> Vec<Case> {
    let port = rogue.base.rsplit(':').next().unwrap().to_string();
    let header = |v: &str| ("AUDIT_WEBHOOK_HEADERS", format!(r#"{{"X-Api-Key":"{v}"}}"#));
    vec![
        // Basic from the URL's user-info (percent-encoded password) and a token-only query.
        Case {
            settings: vec![
                (
                    "AUDIT_WEBHOOK_URL",
                    format!("http://svc:pw%2FS3cret-A@127.0.0.1:{port}/k8s_audit?BARE-T0KEN-A"),
                ),
                header("h3ader-value-A"),
            ],
            hidden: vec![
                "pw%2FS3cret-A".into(),
                "pw/S3cret-A".into(),
                b64("svc:pw/S3cret-A"),
                "BARE-T0KEN-A".into(),
                "h3ader-value-A".into(),
            ],
            on_the_wire: vec![
                ("line", "?BARE-T0KEN-A ".into()),
                ("authorization", format!("Basic {}", b64("svc:pw/S3cret-A"))),
                ("x-api-key", "h3ader-value-A".into()),
            ],
            masked: 4,
        },
        // A bearer token and percent-encoded query values.
        Case {
            settings: vec![
                (
                    "AUDIT_WEBHOOK_URL",
                    format!(
                        "http://127.0.0.1:{port}/k8s_audit?sig=Zm9v%2BYmFy%2FSECRET%3D&se=2030-01-01"
                    ),
                ),
                ("AUDIT_WEBHOOK_BEARER_TOKEN", "b3arer-t0ken-B".into()),
                header("h3ader-value-B"),
            ],
            hidden: vec![
                "Zm9v%2BYmFy%2FSECRET%3D".into(),
                "Zm9v+YmFy/SECRET=".into(),
                "SECRET".into(),
                "2030-01-01".into(),
                "b3arer-t0ken-B".into(),
                "h3ader-value-B".into(),
            ],
            on_the_wire: vec![
                ("line", "sig=Zm9v%2BYmFy%2FSECRET%3D".into()),
                ("authorization", "Bearer b3arer-t0ken-B".into()),
            ],
            masked: 4,
        },
        // Basic from the username and password settings, and a client certificate and key.
        Case {
            settings: vec![
                (
                    "AUDIT_WEBHOOK_URL",
                    format!("http://127.0.0.1:{port}/k8s_audit"),
                ),
                ("AUDIT_WEBHOOK_USERNAME", "svc-c".into()),
                ("AUDIT_WEBHOOK_PASSWORD", "pa55-w0rd-C".into()),
                ("AUDIT_WEBHOOK_CLIENT_CERT", cert_pem.into()),
                ("AUDIT_WEBHOOK_CLIENT_KEY", key_pem.into()),
                header("h3ader-value-C"),
            ],
            hidden: vec![
                "pa55-w0rd-C".into(),
                b64("svc-c:pa55-w0rd-C"),
                "h3ader-value-C".into(),
                key_pem.lines().nth(1).unwrap().into(),
            ],
            on_the_wire: vec![("authorization", format!("Basic {}", b64("svc-c:pa55-w0rd-C")))],
            // The request line carries no secret here.
            masked: 3,
        },
    ]
}

fn client_identity() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (key.serialize_pem(), cert.pem())
}

fn assert_hidden(output: &str, hidden: &[String], what: &str) {
    for secret in hidden {
        assert!(
            !output.contains(secret.as_str()),
            "{secret} leaked in {what}:\n{output}"
        );
    }
}

/// The invocation: each echoed form is dead-lettered with `***` in its place, and no form
/// shows in the answer (its Logs and dead letters) or the log.
#[tokio::test]
async fn every_credential_form_is_masked_in_logs_answers_and_dead_letters() {
    let (key_pem, cert_pem) = client_identity();
    let rogue = echoing_receiver().await;
    for (i, case) in cases(&rogue, &key_pem, &cert_pem).into_iter().enumerate() {
        let mut settings: Vec<(&str, &str)> = case
            .settings
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        settings.extend([("AUDIT_BATCH_MAX_EVENTS", "1"), ("RUST_LOG", "debug")]);
        let handler = spawn_handler(&settings).await;
        let (bodies, _) = audit_bodies("mask", 1, 5, 0);
        let answer = handler.invoke_bodies(&bodies, "0").await;
        assert_eq!(answer.status, 200, "case {i}: {}", answer.body);
        let dead = dead_letters(&answer);
        assert_eq!(dead.len(), 4, "case {i}: {}", answer.body);
        let masked = dead.iter().filter(|d| d.reason.contains("***")).count();
        assert_eq!(masked, case.masked, "case {i}: {dead:?}");
        let requests = rogue.requests();
        for (part, want) in &case.on_the_wire {
            let seen = requests.iter().any(|r| match *part {
                "line" => r.line.contains(want.as_str()),
                name => r.header(name) == Some(want.as_str()),
            });
            assert!(seen, "case {i}: the receiver never saw {part} {want}");
        }
        let everything = format!("{}\n{}", answer.body, handler.log());
        assert_hidden(&everything, &case.hidden, &format!("case {i}"));
        rogue.requests.lock().unwrap().clear();
    }
}

fn run(args: &[&str], settings: &[(&'static str, String)]) -> String {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command.args(args).stdin(Stdio::null());
    for (key, value) in settings {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `check-config --probe` quotes the receiver's echo of the probe, and prints the settings;
/// `--help` of every command runs with the secrets in the environment: no form shows.
#[tokio::test(flavor = "multi_thread")]
async fn every_credential_form_is_masked_in_check_config_and_help() {
    let (key_pem, cert_pem) = client_identity();
    let rogue = echoing_receiver().await;
    for (i, case) in cases(&rogue, &key_pem, &cert_pem).into_iter().enumerate() {
        let settings = case.settings;
        let (out, settings) = tokio::task::spawn_blocking(move || {
            (
                run(
                    &["check-config", "--probe", "--probe-timeout", "5s"],
                    &settings,
                ),
                settings,
            )
        })
        .await
        .unwrap();
        assert!(
            out.contains("refused") && out.contains("***"),
            "case {i}: {out}"
        );
        assert_hidden(&out, &case.hidden, &format!("check-config, case {i}"));
        for command in [
            "serve",
            "check-config",
            "resend",
            "backfill",
            "replay",
            "demo",
            "receive",
            "convert",
        ] {
            let help = run(&[command, "--help"], &settings);
            assert!(help.contains("Usage"), "{command}: {help}");
            assert_hidden(&help, &case.hidden, &format!("{command} --help, case {i}"));
        }
        let help = run(&["--help"], &settings);
        assert_hidden(&help, &case.hidden, &format!("--help, case {i}"));
    }
}

/// A receiver that echoes our headers inside a JSON string, escaped as PHP's `json_encode`
/// (`/` as `\/`) and Go's `encoding/json` (`<`, `>`, `&` as `\u003c`…) escape them by default:
/// the escaped forms are masked too, in the dead letter's reason and in the log.
#[tokio::test]
async fn credentials_echoed_json_escaped_are_masked() {
    let rogue = Rogue::start(|r, _| {
        if r.ids.iter().any(|id| id == "jsonecho-0-1") {
            let php = |v: &str| v.replace('/', "\\/");
            let go = |v: &str| {
                v.replace('<', "\\u003c")
                    .replace('>', "\\u003e")
                    .replace('&', "\\u0026")
            };
            let body = format!(
                r#"{{"error":"denied","authorization":"{}","x-api-key":"{}"}}"#,
                php(r.header("authorization").unwrap_or("")),
                go(r.header("x-api-key").unwrap_or("")),
            );
            Act::Answer(400, Vec::new(), body)
        } else {
            ok()
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_BEARER_TOKEN", "b3arer/t0ken+value/x=="),
        (
            "AUDIT_WEBHOOK_HEADERS",
            r#"{"X-Api-Key":"k3y<&>secret-value"}"#,
        ),
        ("AUDIT_BATCH_MAX_EVENTS", "1"),
    ])
    .await;
    let (bodies, _) = audit_bodies("jsonecho", 1, 3, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{}", answer.body);
    let reason = &dead[0].reason;
    // The echo really carried both values, each replaced by `***`.
    assert!(reason.contains(r#""x-api-key":"***""#), "{reason}");
    assert!(reason.contains(r#""authorization":"***""#), "{reason}");
    let everything = format!("{reason}\n{}\n{}", answer.body, handler.log());
    for fragment in ["t0ken+value", "secret-value"] {
        assert!(
            !everything.contains(fragment),
            "{fragment} leaked:\n{everything}"
        );
    }
}
