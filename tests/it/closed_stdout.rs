//! The tools against a reader that stops early (`aks-audit-forwarder demo | head`): with
//! standard output closed before they write, each ends quietly, without a panic or a
//! `Broken pipe` error, and with the exit status of what it did.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::helpers::{audit_event, free_port, spawn_handler_on, start_receiver, BIN};

/// Starts the binary with `args`, its standard output a pipe whose reader is already gone.
fn spawn_closed(args: &[&str], settings: &[(&str, &str)]) -> Child {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") || key.starts_with("RUST_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .envs(settings.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    child
}

/// Waits (at most two minutes) for `child`; its exit status and standard error.
fn finish(mut child: Child) -> (ExitStatus, String) {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("still running after two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

fn assert_quiet(args: &[&str], status: ExitStatus, stderr: &str) {
    assert!(status.success(), "{args:?}: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
}

/// The demo runs to its end and still checks what the receiver got: exit 0 says the Events
/// arrived, though nobody read the table.
#[test]
fn demo_ends_quietly_and_still_checks_delivery() {
    let (status, stderr) = finish(spawn_closed(&["demo"], &[]));
    assert_quiet(&["demo"], status, &stderr);
}

#[test]
fn convert_and_check_config_end_quietly() {
    for args in [
        &["convert", "--input", "samples/PT1H.json"][..],
        &[
            "convert",
            "--input",
            "samples/PT1H.json",
            "--format",
            "eventlist",
        ],
        &["check-config", "--settings", "local.settings.json.example"],
    ] {
        let (status, stderr) = finish(spawn_closed(args, &[]));
        assert_quiet(args, status, &stderr);
        assert!(!stderr.contains("Error"), "{args:?}: {stderr}");
    }
}

/// A failure is still a failure: a convert whose input is missing exits 1 and says why.
#[test]
fn a_failing_tool_still_fails() {
    let args = ["convert", "--input", "no-such-file.json"];
    let (status, stderr) = finish(spawn_closed(&args, &[]));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-file.json"), "{stderr}");
}

/// `receive` goes on serving (and counting) with nobody reading its lines, and stops on
/// SIGTERM with exit 0.
#[test]
fn receive_serves_and_stops_cleanly() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["receive", "--listen", listen.as_str()];
    let child = spawn_closed(&args, &[]);
    let start = Instant::now();
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => break conn,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                let (status, stderr) = finish(child);
                panic!("receive never listened ({e}): {status}: {stderr}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        audit_event("closed-stdout-1", 0)
    );
    write!(
        conn,
        "POST /k8s_audit HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (status, stderr) = finish(child);
    assert_quiet(&args, status, &stderr);
}

/// `replay` against a handler that delivers to a receiver: exit 0, every Event delivered.
#[tokio::test(flavor = "multi_thread")]
async fn replay_ends_quietly_and_delivers() {
    let receiver = start_receiver().await;
    let port = free_port();
    let mut handler = spawn_handler_on(port, &receiver.url("/k8s_audit"));
    let url = format!("http://127.0.0.1:{port}");
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let args = [
            "replay",
            "--handler",
            url.as_str(),
            "--retries",
            "50",
            "--retry-delay",
            "100ms",
        ];
        finish(spawn_closed(&args, &[]))
    })
    .await
    .unwrap();
    let _ = handler.kill().await;
    assert_quiet(&["replay"], status, &stderr);
    assert_eq!(receiver.receiver.stats().events, 8);
}
