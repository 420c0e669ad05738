//! The process as the host runs it: startup, configuration errors, shutdown, secrets.

use std::process::{Command, Stdio};
use std::time::Duration;

use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use aks_audit_forwarder::tools::receiver::Scripted;

use crate::helpers::*;

/// Starts and answers the readiness probe; the figure is printed for the record (speed
/// targets live in the load harness, not in assertions).
#[tokio::test]
async fn answers_readiness_probe() {
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit")]).await;
    eprintln!("handler answered GET / after {:?}", handler.startup);
    let response = reqwest::get(format!("http://127.0.0.1:{}/", handler.port))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(handler.log().contains("Handler ready."));
}

fn run_with_env(env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    command.output().expect("run")
}

/// A bad setting stops startup with a non-zero exit (the host restarts a crashed handler,
/// but not one that exits 0) and names the variable and the reason.
#[test]
fn bad_configuration_fails_fast_naming_the_variable() {
    let port = free_port().to_string();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "FUNCTIONS_CUSTOMHANDLER_PORT is not set"),
        (
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")],
            "FUNCTIONS_CUSTOMHANDLER_PORT=\"http\" is invalid",
        ),
        (
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", &port)],
            "AUDIT_WEBHOOK_URL is required",
        ),
        (
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", &port),
                ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/"),
                ("AUDIT_WEBHOOK_TIMEOUT", "forever"),
            ],
            "AUDIT_WEBHOOK_TIMEOUT=\"forever\" is invalid",
        ),
    ];
    for (env, message) in cases {
        let out = run_with_env(env);
        assert!(!out.status.success(), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{env:?}: {stderr}");
    }
}

/// The legacy port variable is honoured when the current one is absent.
#[tokio::test]
async fn falls_back_to_httpworker_port() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host =
        aks_audit_forwarder::tools::hostsim::HostSim::new(format!("http://127.0.0.1:{port}"));
    let ready = host.wait_ready(Duration::from_secs(30)).await;
    let _ = child.kill();
    let _ = child.wait();
    ready.unwrap();
}

/// SIGTERM while an invocation is in flight: the invocation still completes and is
/// answered, then the process exits 0.
#[tokio::test]
async fn sigterm_finishes_in_flight_invocations() {
    let receiver = start_receiver().await;
    receiver
        .receiver
        .push_script([Scripted::Delay(Duration::from_millis(1500))]);
    let mut handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (bodies, expected) = audit_bodies("term", 1, 3, 0);
    let request = build_request(
        Shape::ManyBinary,
        &bodies,
        &mut SimPartition::new("0"),
        None,
    )
    .unwrap();
    let host = handler.host.clone();
    let pending = tokio::spawn(async move { host.invoke("EventHubForwarder", request).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    handler.terminate();
    let answer = pending.await.unwrap().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &expected);
    let status = handler.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
}

/// Credentials in the webhook URL never reach the logs or the host's answer, even when
/// delivery fails and errors are logged.
#[tokio::test]
async fn webhook_credentials_never_logged() {
    let secret = "Sup3rS3cretPassw0rd";
    let port = free_port();
    let url = format!("http://svc-user:{secret}@127.0.0.1:{port}/k8s_audit?token={secret}");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &url),
        ("AUDIT_DELIVERY_DEADLINE", "1s"),
        ("RUST_LOG", "trace"),
    ])
    .await;
    let (bodies, _) = audit_bodies("secret", 1, 1, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 500);
    assert!(!answer.body.contains(secret), "{}", answer.body);
    let log = handler.log();
    assert!(
        log.contains("127.0.0.1"),
        "the log should name the webhook host"
    );
    assert!(!log.contains(secret), "{log}");
}

/// The handler listens on 127.0.0.1 only: read from the kernel's socket table, so no traffic
/// needs to leave loopback to prove it.
#[tokio::test]
async fn listens_on_loopback_only() {
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit")]).await;
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = format!("{:04X}", handler.port);
    let listening: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, state) = (fields.get(1)?, fields.get(3)?);
            (addr.ends_with(&format!(":{port}")) && *state == "0A").then_some(*addr)
        })
        .collect();
    assert_eq!(listening, vec![format!("0100007F:{port}")]);
    let table6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    assert!(
        !table6
            .lines()
            .any(|l| l.contains(&format!(":{port} ")) && l.contains(" 0A ")),
        "no IPv6 listener"
    );
}
