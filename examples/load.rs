//! Load harness for the release binary: startup time, peak memory on the largest batch, and
//! end-to-end throughput with eight partitions, all against a receiver on 127.0.0.1.
//!
//! Run: `cargo build --release && cargo run --release --example load`.
//! Traffic goes to loopback only, in a bounded number of requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aks_audit_forwarder::tools::hostsim::{build_request, HostSim, Shape, SimPartition};
use aks_audit_forwarder::tools::receiver::Receiver;
use serde_json::json;

fn binary() -> String {
    std::env::var("HANDLER_BIN").unwrap_or_else(|_| {
        format!(
            "{}/target/release/aks-audit-forwarder",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

fn spawn(port: u16, webhook: &str) -> Child {
    Command::new(binary())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUDIT_WEBHOOK_URL", webhook)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the release binary (cargo build --release first)")
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn bodies(prefix: &str, n: usize, per: usize, pad: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|b| {
            let records: Vec<_> = (0..per)
                .map(|r| {
                    let event = json!({"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request",
                        "auditID": format!("{prefix}-{b}-{r}"),"stage":"ResponseComplete",
                        "requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"update",
                        "user":{"username":"alice@contoso.com"},"objectRef":{"resource":"configmaps"},
                        "requestObject":{"data":{"blob":"x".repeat(pad)}},
                        "requestReceivedTimestamp":"2026-11-23T07:00:00.123456Z",
                        "stageTimestamp":"2026-11-23T07:00:00.234567Z"});
                    json!({"category":"kube-audit","properties":{"log":format!("{event}\n")}})
                })
                .collect();
            json!({ "records": records }).to_string().into_bytes()
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let receiver = Receiver::new();
    let running = receiver
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("receiver");
    let webhook = running.url("/k8s_audit");

    // 1. Startup: spawn → first answer to GET /, against spawning `true` to completion.
    let mut handler_times = Vec::new();
    let mut true_times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let _ = Command::new("true").status();
        true_times.push(t.elapsed());
        let port = free_port();
        let t = Instant::now();
        let mut child = spawn(port, &webhook);
        // Poll every millisecond (the host polls every 25 ms) to see the real start time.
        let client = reqwest::Client::new();
        while client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err()
        {
            assert!(t.elapsed() < Duration::from_secs(30), "not ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handler_times.push(t.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    let (h, t) = (median(handler_times), median(true_times));
    println!(
        "startup: median {:.1} ms to answer GET / (spawning `true`: {:.1} ms; ratio {:.1}x; the host polls every 25 ms)",
        h.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        h.as_secs_f64() / t.as_secs_f64()
    );

    // 2. Peak memory on the largest batch: 100 events of ~1 MiB.
    let port = free_port();
    let mut child = spawn(port, &webhook);
    let host = HostSim::new(format!("http://127.0.0.1:{port}"));
    host.wait_ready(Duration::from_secs(30))
        .await
        .expect("ready");
    let idle = vm_hwm_kib(child.id());
    let request = build_request(
        Shape::ManyBinary,
        &bodies("mib", 100, 10, 100 * 1024),
        &mut SimPartition::new("0"),
        None,
    )
    .expect("request");
    let size = request.len();
    let t = Instant::now();
    let answer = host
        .invoke("EventHubForwarder", request)
        .await
        .expect("invoke");
    let took = t.elapsed();
    let peak = vm_hwm_kib(child.id());
    println!(
        "largest batch: {:.0} MiB request, status {}, {:.2} s; peak RSS {:.0} MiB (idle {:.1} MiB) = {:.2}x the request",
        size as f64 / 1048576.0,
        answer.status,
        took.as_secs_f64(),
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
        peak as f64 * 1024.0 / size as f64
    );

    // 3. Throughput: 8 partitions × 5 invocations × 100 events × 20 records of ~1.5 KiB.
    let before = receiver.stats().events;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut partition = SimPartition::new(p.to_string());
            for i in 0..5 {
                let b = bodies(&format!("p{p}-{i}"), 100, 20, 1200);
                let request =
                    build_request(Shape::ManyBinary, &b, &mut partition, None).expect("request");
                let answer = host
                    .invoke("EventHubForwarder", request)
                    .await
                    .expect("invoke");
                assert_eq!(answer.status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let events = receiver.stats().events - before;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "throughput: {events} events through handler and receiver in {secs:.2} s = {:.0} events/s (8 partitions, 2 cores shared by sender, handler and receiver)",
        events as f64 / secs
    );
    let _ = child.kill();
    let _ = child.wait();
    running.stop().await;
}
