//! Load harness for the release binary: start-up, peak memory on the largest batches (valid
//! and malformed-heavy), and end-to-end throughput with eight partitions against a counting
//! receiver on 127.0.0.1, side by side with the floor run as a forwarder and with one POST per
//! Event (`AUDIT_WEBHOOK_FORMAT=event`, the in-cluster forwarder's design).
//!
//! Run: `cargo build --release && cargo run --release --example load`. Results go to
//! `target/perf/load.json` and `target/perf/load.svg` (`LOAD_OUT=<dir>` to change).
//! `LOAD_ROUNDS` (default 5) sets the interleaved throughput rounds; `HANDLER_BIN` the binary;
//! `LOAD_PLOT=<load.json>` only redraws the plot of earlier results; `LOAD_SCENARIO=alerts` runs
//! only the alert latency scenario (from the invocation's arrival to the card's POST).
//! Traffic goes to loopback only, in a bounded number of requests.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aks_audit_forwarder::tools::counter::CountingReceiver;
use aks_audit_forwarder::tools::floor::floor_batches;
use aks_audit_forwarder::tools::hostsim::{build_request, HostSim, Shape, SimPartition};
use aks_audit_forwarder::tools::notified::Notified;
use futures::StreamExt as _;
use serde_json::{json, Value};

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

fn spawn(port: u16, webhook: &str, env: &[(&str, &str)]) -> Child {
    Command::new(binary())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUDIT_WEBHOOK_URL", webhook)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the release binary (cargo build --release first)")
}

/// A handler process and a host stand-in talking to it.
struct Handler {
    child: Child,
    host: HostSim,
}

impl Handler {
    async fn start(webhook: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = spawn(port, webhook, env);
        let host = HostSim::new(format!("http://127.0.0.1:{port}"));
        host.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        Self { child, host }
    }

    fn peak_kib(&self) -> u64 {
        vm_hwm_kib(self.child.id())
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn event(id: &str, pad: usize) -> Value {
    json!({"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request",
        "auditID": id,"stage":"ResponseComplete",
        "requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"update",
        "user":{"username":"alice@contoso.com"},"objectRef":{"resource":"configmaps"},
        "requestObject":{"data":{"blob":"x".repeat(pad)}},
        "requestReceivedTimestamp":"2026-11-23T07:00:00.123456Z",
        "stageTimestamp":"2026-11-23T07:00:00.234567Z"})
}

const RESOURCE_ID: &str =
    "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1";

fn bodies(prefix: &str, n: usize, per: usize, pad: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|b| {
            let records: Vec<_> = (0..per)
                .map(|r| {
                    let log = format!("{}\n", event(&format!("{prefix}-{b}-{r}"), pad));
                    json!({"category":"kube-audit","resourceId":RESOURCE_ID,"properties":{"log":log}})
                })
                .collect();
            json!({ "records": records }).to_string().into_bytes()
        })
        .collect()
}

/// `n` bodies of about 1 MiB, each made of kube-audit records of about `record_len` bytes
/// whose log is a truncated Event: every record is malformed.
fn malformed_bodies(n: usize, record_len: usize) -> Vec<Vec<u8>> {
    let whole = event("truncated", 4096).to_string();
    (0..n)
        .map(|b| {
            let mut records = Vec::new();
            let mut size = 0;
            let mut r = 0;
            while size < 1 << 20 {
                let shell = json!({"category":"kube-audit","properties":{"log":""}}).to_string();
                let keep = record_len.saturating_sub(shell.len() + 12).max(8);
                let log = format!("{}{b}-{r}", &whole[..keep.min(whole.len())]);
                let record = json!({"category":"kube-audit","properties":{"log":log}});
                size += record.to_string().len() + 1;
                records.push(record);
                r += 1;
            }
            json!({ "records": records }).to_string().into_bytes()
        })
        .collect()
}

/// `n` bodies of about 1 MiB of kube-audit records whose log is quotes and backslashes (not an
/// Event): every record is malformed, and JSON escaping inflates the body's text the most.
fn quote_heavy_bodies(n: usize) -> Vec<Vec<u8>> {
    let record = json!({"category":"kube-audit","properties":{"log":"\"\\\"".repeat(40)}});
    let per = (1 << 20) / (record.to_string().len() + 1);
    (0..n)
        .map(|_| {
            json!({ "records": vec![record.clone(); per] })
                .to_string()
                .into_bytes()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(bytes: f64) -> f64 {
    bytes / 1048576.0
}

/// Peak RSS of a fresh handler given one request.
async fn memory(name: &str, webhook: &str, request: Vec<u8>) -> Value {
    let handler = Handler::start(webhook, &[]).await;
    let idle = handler.peak_kib();
    let size = request.len();
    let t = Instant::now();
    let answer = handler
        .host
        .invoke("EventHubForwarder", request)
        .await
        .expect("invoke");
    let took = t.elapsed().as_secs_f64();
    let peak = handler.peak_kib();
    let ratio = peak as f64 * 1024.0 / size as f64;
    println!(
        "memory {name}: {:.0} MiB request, status {}, {took:.2} s; peak RSS {:.0} MiB (idle {:.1} MiB) = {ratio:.2}x the request",
        mib(size as f64),
        answer.status,
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
    );
    json!({"scenario": name, "request_mib": mib(size as f64), "status": answer.status,
           "seconds": took, "peak_rss_mib": peak as f64 / 1024.0, "peak_vs_request": ratio})
}

/// One throughput run through a handler: every partition sends its requests in order.
async fn run_handler(host: &HostSim, requests: &Arc<Vec<Vec<Vec<u8>>>>) {
    let mut tasks = Vec::new();
    for p in 0..requests.len() {
        let (host, requests) = (host.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            for request in &requests[p] {
                let answer = host
                    .invoke("EventHubForwarder", request.clone())
                    .await
                    .expect("invoke");
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}

/// One throughput run of the floor as a forwarder: the floor's work in-process, then its
/// `EventList` bodies POSTed by one shared client, 4 in flight per invocation (the handler's
/// default `AUDIT_WEBHOOK_CONCURRENCY`).
async fn run_floor(client: &reqwest::Client, url: &str, requests: &Arc<Vec<Vec<Vec<u8>>>>) {
    let mut tasks = Vec::new();
    for p in 0..requests.len() {
        let (client, url, requests) = (client.clone(), url.to_string(), requests.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..requests[p].len() {
                let requests = requests.clone();
                let (batches, _) =
                    tokio::task::spawn_blocking(move || floor_batches(&requests[p][i], 400))
                        .await
                        .expect("join")
                        .expect("floor");
                let statuses: Vec<_> = futures::stream::iter(batches)
                    .map(|b| client.post(&url).body(b).send())
                    .buffer_unordered(4)
                    .collect()
                    .await;
                for s in statuses {
                    assert!(s.expect("post").status().is_success());
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}

#[tokio::main]
async fn main() {
    let out = PathBuf::from(
        std::env::var("LOAD_OUT")
            .unwrap_or_else(|_| format!("{}/target/perf", env!("CARGO_MANIFEST_DIR"))),
    );
    let rounds: usize = std::env::var("LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // `LOAD_PLOT=<load.json>`: draw the plot of earlier results again, next to them.
    if let Ok(path) = std::env::var("LOAD_PLOT") {
        let text = std::fs::read_to_string(&path).expect("read the results");
        let results: Value = serde_json::from_str(&text).expect("results JSON");
        let svg = PathBuf::from(&path).with_extension("svg");
        std::fs::write(&svg, plot(&results)).expect("write plot");
        println!("plot: {}", svg.display());
        return;
    }
    let receiver = CountingReceiver::start().await.expect("receiver");
    let webhook = receiver.url("/k8s_audit");
    let alerts = alert_latency(&webhook).await;
    if std::env::var("LOAD_SCENARIO").as_deref() == Ok("alerts") {
        return;
    }

    // 1. Start-up: spawn → first answer to GET /, against spawning `true` to completion.
    let (mut ready, mut spawn_true, mut idle) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        let _ = Command::new("true").status();
        spawn_true.push(t.elapsed().as_secs_f64() * 1e3);
        let port = free_port();
        let t = Instant::now();
        let mut child = spawn(port, &webhook, &[]);
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
        ready.push(t.elapsed().as_secs_f64() * 1e3);
        idle.push(vm_hwm_kib(child.id()) as f64 / 1024.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    let (ready, spawn_true, idle) = (median(ready), median(spawn_true), median(idle));
    println!(
        "startup: median {ready:.1} ms to answer GET / (spawning `true`: {spawn_true:.1} ms); idle peak RSS {idle:.1} MiB"
    );
    let startup = json!({"ready_ms": ready, "spawn_true_ms": spawn_true, "idle_rss_mib": idle});

    // 2. Peak memory: 100 events of ~1 MiB, valid and malformed-heavy; a fresh handler each.
    let mut memories = Vec::new();
    let mut partition = SimPartition::new("0");
    let mut request =
        |b: &[Vec<u8>]| build_request(Shape::ManyBinary, b, &mut partition, None).expect("request");
    let largest = request(&bodies("mib", 100, 10, 100 * 1024));
    memories.push(memory("100 x 1 MiB events", &webhook, largest).await);
    for len in [370, 100] {
        let malformed = request(&malformed_bodies(100, len));
        let name = format!("100 x 1 MiB of malformed {len}-byte records");
        memories.push(memory(&name, &webhook, malformed).await);
    }
    let quotes = request(&quote_heavy_bodies(100));
    let name = "100 x 1 MiB of malformed quote-heavy records";
    memories.push(memory(name, &webhook, quotes).await);

    // 3. Throughput: 8 partitions × 3 invocations × 100 events × 20 records of ~1.5 KiB, the
    //    same requests through each forwarder, interleaved, medians of `rounds` rounds.
    let requests: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(
        (0..8)
            .map(|p| {
                let mut partition = SimPartition::new(p.to_string());
                (0..3)
                    .map(|i| {
                        let b = bodies(&format!("p{p}-{i}"), 100, 20, 1200);
                        build_request(Shape::ManyBinary, &b, &mut partition, None).expect("request")
                    })
                    .collect()
            })
            .collect(),
    );
    let eventlist = Handler::start(&webhook, &[]).await;
    let per_event = Handler::start(&webhook, &[("AUDIT_WEBHOOK_FORMAT", "event")]).await;
    let client = reqwest::Client::new();
    let names = [
        "handler (EventList, defaults)",
        "floor as a forwarder",
        "one POST per Event (format=event)",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut counted = vec![0u64; names.len()];
    for _ in 0..rounds {
        for (i, rate) in rates.iter_mut().enumerate() {
            let before = receiver.events();
            let t = Instant::now();
            match i {
                0 => run_handler(&eventlist.host, &requests).await,
                1 => run_floor(&client, &webhook, &requests).await,
                _ => run_handler(&per_event.host, &requests).await,
            }
            let events = receiver.events() - before;
            counted[i] = events;
            rate.push(events as f64 / t.elapsed().as_secs_f64());
        }
    }
    let mut throughput = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let rate = median(rates[i].clone());
        // The machine is shared: compare each run with the floor's run of the same round.
        let vs_floor = median(rates[i].iter().zip(&rates[1]).map(|(r, f)| r / f).collect());
        let peak = match i {
            0 => Some(eventlist.peak_kib() as f64 / 1024.0),
            2 => Some(per_event.peak_kib() as f64 / 1024.0),
            _ => None,
        };
        println!(
            "throughput {name}: {rate:.0} events/s ({} events per run, median of {rounds}) = {vs_floor:.2}x the floor forwarder (median of per-round ratios){}",
            counted[i],
            peak.map(|p| format!("; handler peak RSS {p:.0} MiB")).unwrap_or_default()
        );
        throughput.push(json!({"scenario": name, "events_per_s": rate, "vs_floor": vs_floor,
                               "events_per_run": counted[i], "runs": rates[i], "peak_rss_mib": peak}));
    }

    let results = json!({"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                         "startup": startup, "memory": memories, "throughput": throughput,
                         "alerts": alerts});
    std::fs::create_dir_all(&out).expect("output directory");
    let json_path = out.join("load.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&results).expect("json"),
    )
    .expect("write results");
    let svg_path = out.join("load.svg");
    std::fs::write(&svg_path, plot(&results)).expect("write plot");
    println!(
        "results: {} and {}",
        json_path.display(),
        svg_path.display()
    );
}

/// Alert latency: invocations of one matching Event each (a `kubectl patch` of coredns), one
/// at a time, to a handler with one Teams rule and no grouping window; the time from sending
/// the invocation to the moment the stand-in Teams webhook has the card's POST.
async fn alert_latency(webhook: &str) -> Value {
    let teams = Notified::start(202).await.expect("notifier stand-in");
    let rules = format!(
        "notifiers: [{{name: secops, type: teams, url: \"{}\"}}]\nrules:\n- name: coredns-changed\n  notify: [secops]\n  match: {{verbs: [patch], namespaces: [kube-system], resources: [{{group: apps, resources: [deployments], resourceNames: [coredns]}}]}}\ngrouping: {{window: 0s}}\n",
        teams.url("/workflows/load")
    );
    let handler = Handler::start(webhook, &[("AUDIT_ALERTS", rules.as_str())]).await;
    let mut partition = SimPartition::new("0");
    let mut latencies = Vec::new();
    for i in 0..30 {
        let mut e = event(&format!("alert-{i}"), 0);
        e["verb"] = json!("patch");
        e["requestURI"] = json!("/apis/apps/v1/namespaces/kube-system/deployments/coredns");
        e["objectRef"] = json!({"resource": "deployments", "namespace": "kube-system",
                                "name": "coredns", "apiGroup": "apps", "apiVersion": "v1"});
        let record = json!({"category": "kube-audit-admin", "resourceId": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-LOAD",
                            "properties": {"log": e.to_string()}});
        let body = json!({"records": [record]}).to_string().into_bytes();
        let request =
            build_request(Shape::ManyBinary, &[body], &mut partition, None).expect("request");
        let before = teams.posts().len();
        let sent = Instant::now();
        let answer = handler
            .host
            .invoke("EventHubForwarder", request)
            .await
            .expect("invoke");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let posts = teams.posts();
        assert_eq!(posts.len(), before + 1, "one card per invocation");
        latencies.push(posts[before].at.duration_since(sent).as_secs_f64() * 1e3);
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, max) = (median(latencies.clone()), sorted[sorted.len() - 1]);
    let p95 = sorted[(sorted.len() * 95).div_ceil(100) - 1];
    println!(
        "alerts: invocation sent -> card POST received: median {p50:.1} ms, p95 {p95:.1} ms, max {max:.1} ms ({} invocations, one matching Event each)",
        latencies.len()
    );
    json!({"scenario": "alert latency (invocation -> card POST)", "median_ms": p50, "p95_ms": p95,
           "max_ms": max, "runs_ms": latencies})
}

/// Two bar charts side by side: Events/s per throughput scenario, peak RSS / request per
/// memory scenario (with the 1.5x goal drawn).
fn plot(results: &Value) -> String {
    let bars = |items: &[Value], key: &str| -> Vec<(String, f64)> {
        items
            .iter()
            .map(|v| {
                (
                    v["scenario"].as_str().unwrap_or("").to_string(),
                    v[key].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    let empty = Vec::new();
    let rates = bars(
        results["throughput"].as_array().unwrap_or(&empty),
        "events_per_s",
    );
    let memory = bars(
        results["memory"].as_array().unwrap_or(&empty),
        "peak_vs_request",
    );
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1060" height="420" font-family="sans-serif" font-size="12">
<rect width="1060" height="420" fill="white"/>
"#,
    );
    let chart = |svg: &mut String,
                 x0: f64,
                 title: &str,
                 data: &[(String, f64)],
                 fmt: &dyn Fn(f64) -> String,
                 goal: Option<f64>| {
        let (w, h, top) = (440.0, 250.0, 50.0);
        let max = data
            .iter()
            .map(|d| d.1)
            .chain(goal)
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.15;
        svg.push_str(&format!(
            r#"<text x="{}" y="25" font-size="15" font-weight="bold">{title}</text>
<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="black"/>
"#,
            x0,
            top + h,
            x0 + w,
            top + h
        ));
        let slot = w / data.len().max(1) as f64;
        for (i, (name, value)) in data.iter().enumerate() {
            let bh = value / max * h;
            let x = x0 + i as f64 * slot + slot * 0.15;
            svg.push_str(&format!(
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4477aa"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
"##,
                top + h - bh,
                slot * 0.7,
                x + slot * 0.35,
                top + h - bh - 5.0,
                fmt(*value)
            ));
            for (j, line) in wrap(&name.replace(" (", " \n("), 18).iter().enumerate() {
                svg.push_str(&format!(
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
"#,
                    x + slot * 0.35,
                    top + h + 18.0 + 14.0 * j as f64,
                    escape(line)
                ));
            }
        }
        if let Some(goal) = goal {
            let y = top + h - goal / max * h;
            svg.push_str(&format!(
                r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#cc3311" stroke-dasharray="6,4"/>
<text x="{}" y="{:.1}" fill="#cc3311" text-anchor="start">goal {}</text>
"##,
                x0 + w,
                x0 + w + 4.0,
                y + 4.0,
                fmt(goal)
            ));
        }
    };
    chart(
        &mut svg,
        40.0,
        "Events/s at a counting receiver (8 partitions)",
        &rates,
        &|v| format!("{v:.0}"),
        None,
    );
    chart(
        &mut svg,
        530.0,
        "Peak RSS / request size",
        &memory,
        &|v| format!("{v:.2}x"),
        Some(1.5),
    );
    svg.push_str("</svg>\n");
    svg
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        let fresh = word.starts_with('\n');
        let word = word.trim_start_matches('\n');
        match lines.last_mut() {
            Some(line) if !fresh && line.len() + word.len() < width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
