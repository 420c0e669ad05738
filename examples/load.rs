//! Load harness for the release binary, process against process: the handler and the floor
//! handler (`examples/floor_handler.rs`, the least work any custom handler must do, run as a
//! process started and driven exactly like the handler) side by side in interleaved rounds,
//! on the realistic mix, with the Sysdig Policy, and on many small Events: CPU per invocation
//! (the process's utime + stime) and end-to-end Events/s with eight partitions at once, to a
//! counting receiver on 127.0.0.1. Also the handler's start-up, idle RSS and peak memory on
//! the largest batches (valid and malformed-heavy), and the alert latency.
//!
//! Run: `cargo run --release --example load` (it builds the release binary and the floor
//! handler first). Results go to `target/perf/load.json` and `target/perf/load.svg`
//! (`LOAD_OUT=<dir>` to change). `LOAD_ROUNDS` (default 7) sets the interleaved rounds;
//! `LOAD_PARTS` a comma list of `startup`, `memory`, `floor`, `per-event` (default all but
//! `per-event`); `LOAD_ONLY=<text>` keeps the scenarios whose name holds it; `HANDLER_BIN`
//! and `FLOOR_BIN` the binaries (then nothing is built);
//! `LOAD_PLOT=<load.json>` only redraws the plot of earlier results; `LOAD_SCENARIO=alerts`
//! runs only the alert latency scenario (from the invocation's arrival to the card's POST).
//! The processes' ids are
//! printed, for `perf record -g -p <pid>` while the rounds run. Traffic goes to loopback
//! only, in a bounded number of requests.

#[path = "load/alerts.rs"]
mod alerts;
#[path = "load/plot.rs"]
mod plot;
#[path = "load/requests.rs"]
mod requests;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aks_audit_forwarder::tools::counter::CountingReceiver;
use aks_audit_forwarder::tools::hostsim::{build_request, HostSim, Shape, SimPartition};
use serde_json::{json, Value};

use requests::{malformed_bodies, mix_bodies, padded_bodies, quote_heavy_bodies, small_bodies};

fn release_path(name: &str) -> String {
    format!("{}/target/release/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The handler binary and the floor handler binary; built first unless both are given.
fn binaries() -> (String, String) {
    let given = (std::env::var("HANDLER_BIN"), std::env::var("FLOOR_BIN"));
    if let (Ok(handler), Ok(floor)) = given {
        return (handler, floor);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--bin", "aks-audit-forwarder"])
        .args(["--example", "floor_handler"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(built.success(), "cargo build --release failed");
    (
        release_path("aks-audit-forwarder"),
        release_path("examples/floor_handler"),
    )
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `bin` as the Functions host starts a custom handler. Logging is left at its
/// default (`RUST_LOG` unset), output discarded.
fn spawn(bin: &str, port: u16, webhook: &str, env: &[(&str, String)]) -> Child {
    Command::new(bin)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUDIT_WEBHOOK_URL", webhook)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"))
}

/// A handler process (or the floor handler) and a host stand-in talking to it.
struct Process {
    child: Child,
    host: HostSim,
}

impl Process {
    async fn start(bin: &str, webhook: &str, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let child = spawn(bin, port, webhook, env);
        let host = HostSim::new(format!("http://127.0.0.1:{port}"));
        host.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        Self { child, host }
    }

    fn peak_kib(&self) -> u64 {
        vm_hwm_kib(self.child.id())
    }

    /// CPU time the process has used so far, all threads, user and system (seconds).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name: state is the 3rd field, utime the 14th, stime the 15th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        ticks / clock_ticks()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn vm_hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A `kB` figure of `/proc/<pid>/status` (`VmHWM:`, `RssAnon:`…), 0 when unreadable.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(bytes: f64) -> f64 {
    bytes / 1048576.0
}

/// Start-up: spawn → first answer to `GET /` (polled every millisecond), against spawning
/// `true` to completion; and the idle peak RSS, with the part of it that is anonymous memory
/// (the rest is the binary's own pages, mapped from the file by the kernel in 64 KiB windows).
async fn startup(bin: &str, webhook: &str) -> Value {
    let (mut ready, mut spawn_true, mut idle) = (Vec::new(), Vec::new(), Vec::new());
    let mut anon = Vec::new();
    let client = reqwest::Client::new();
    for _ in 0..15 {
        let t = Instant::now();
        let _ = Command::new("true").status();
        spawn_true.push(t.elapsed().as_secs_f64() * 1e3);
        let port = free_port();
        let t = Instant::now();
        let mut child = spawn(bin, port, webhook, &[]);
        let url = format!("http://127.0.0.1:{port}/");
        while client.get(&url).send().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "not ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ready.push(t.elapsed().as_secs_f64() * 1e3);
        idle.push(vm_hwm_kib(child.id()) as f64 / 1024.0);
        anon.push(status_kib(child.id(), "RssAnon:") as f64 / 1024.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    let (ready, spawn_true, idle) = (median(ready), median(spawn_true), median(idle));
    let anon = median(anon);
    println!(
        "startup: median {ready:.1} ms to answer GET / (spawning `true`: {spawn_true:.1} ms); idle peak RSS {idle:.1} MiB ({anon:.1} MiB anonymous)"
    );
    json!({"ready_ms": ready, "spawn_true_ms": spawn_true, "idle_rss_mib": idle, "idle_anon_mib": anon})
}

/// Peak RSS of a fresh handler given one request.
async fn memory(bin: &str, name: &str, webhook: &str, request: Vec<u8>) -> Value {
    let handler = Process::start(bin, webhook, &[]).await;
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

async fn memories(bin: &str, webhook: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut partition = SimPartition::new("0");
    let mut request =
        |b: &[Vec<u8>]| build_request(Shape::ManyBinary, b, &mut partition, None).expect("request");
    let largest = request(&padded_bodies("mib", 100, 10, 100 * 1024));
    out.push(memory(bin, "100 x 1 MiB events", webhook, largest).await);
    // Under 32 MiB: read into a pooled buffer, kept whole until converted.
    let mix = request(&mix_bodies("mem", 100, 20));
    out.push(memory(bin, "realistic mix (100 x 20 records)", webhook, mix).await);
    for len in [370, 100] {
        let malformed = request(&malformed_bodies(100, len));
        let name = format!("100 x 1 MiB of malformed {len}-byte records");
        out.push(memory(bin, &name, webhook, malformed).await);
    }
    let quotes = request(&quote_heavy_bodies(100));
    let name = "100 x 1 MiB of malformed quote-heavy records";
    out.push(memory(bin, name, webhook, quotes).await);
    out
}

/// Requests of one scenario: for each partition, its invocations in order.
type Requests = Arc<Vec<Vec<Vec<u8>>>>;

/// `invocations` requests for each of 8 partitions, of the bodies `bodies(tag)` gives.
fn partitions(invocations: usize, bodies: impl Fn(&str) -> Vec<Vec<u8>>) -> Requests {
    Arc::new(
        (0..8)
            .map(|p| {
                let mut partition = SimPartition::new(p.to_string());
                (0..invocations)
                    .map(|i| {
                        let b = bodies(&format!("p{p}-{i}"));
                        build_request(Shape::ManyBinary, &b, &mut partition, None).expect("request")
                    })
                    .collect()
            })
            .collect(),
    )
}

/// One run: every partition sends its requests in order, all partitions at once. Returns
/// the wall time and the CPU the process used.
async fn drive(process: &Process, requests: &Requests) -> (f64, f64) {
    let cpu = process.cpu_seconds();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..requests.len() {
        let (host, requests) = (process.host.clone(), requests.clone());
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
    let wall = t.elapsed().as_secs_f64();
    (wall, process.cpu_seconds() - cpu)
}

/// A comparison with the floor handler: a handler configuration and its requests.
struct Scenario {
    name: &'static str,
    handler: Process,
    requests: Requests,
    /// Events in each invocation.
    events: usize,
}

/// What each process did in each round of one scenario.
#[derive(Default)]
struct Runs {
    /// CPU ms per invocation, handler and floor.
    cpu: [Vec<f64>; 2],
    /// Events/s, handler and floor.
    rate: [Vec<f64>; 2],
    /// Events the receiver counted in the last run, handler and floor.
    delivered: [u64; 2],
}

async fn versus_floor(
    bins: &(String, String),
    receiver: &CountingReceiver,
    rounds: usize,
) -> Vec<Value> {
    let webhook = receiver.url("/k8s_audit");
    let policy = format!(
        "{}/examples/policies/sysdig-general-purpose.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mix = partitions(2, |tag| mix_bodies(tag, 100, 20));
    let small = partitions(2, |tag| small_bodies(tag, 100, 40));
    let mut scenarios = vec![
        Scenario {
            name: "realistic mix (defaults)",
            handler: Process::start(&bins.0, &webhook, &[]).await,
            requests: mix.clone(),
            events: 2000,
        },
        Scenario {
            name: "realistic mix (Sysdig Policy + annotations)",
            handler: Process::start(&bins.0, &webhook, &[("AUDIT_POLICY_FILE", policy)]).await,
            requests: mix,
            events: 2000,
        },
        Scenario {
            name: "small Events (defaults)",
            handler: Process::start(&bins.0, &webhook, &[]).await,
            requests: small.clone(),
            events: 4000,
        },
        // The cluster annotations add about 150 bytes to each small Event (a fifth more to
        // send and for the receiver to read); the floor handler sends none.
        Scenario {
            name: "small Events (no cluster annotations)",
            handler: Process::start(
                &bins.0,
                &webhook,
                &[("AUDIT_CLUSTER_ANNOTATIONS", "false".to_string())],
            )
            .await,
            requests: small,
            events: 4000,
        },
    ];
    // `LOAD_ONLY=<text>`: only the scenarios whose name holds it (to profile one handler).
    if let Ok(only) = std::env::var("LOAD_ONLY") {
        scenarios.retain(|s| s.name.contains(only.as_str()));
    }
    let floor = Process::start(&bins.1, &webhook, &[]).await;
    println!(
        "processes: floor handler pid {}; handlers: {}",
        floor.child.id(),
        scenarios
            .iter()
            .map(|s| format!("{} pid {}", s.name, s.handler.child.id()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &scenarios {
        let size: usize = s.requests.iter().flatten().map(Vec::len).sum();
        let count: usize = s.requests.iter().map(Vec::len).sum();
        println!(
            "{}: {} invocations of {} Events, {:.1} MiB each",
            s.name,
            count,
            s.events,
            mib(size as f64 / count as f64)
        );
        // A first run of each, not counted: allocator arenas and connection pools warm up.
        drive(&s.handler, &s.requests).await;
        drive(&floor, &s.requests).await;
    }
    let mut runs: Vec<Runs> = scenarios.iter().map(|_| Runs::default()).collect();
    for round in 0..rounds {
        for (s, runs) in scenarios.iter_mut().zip(&mut runs) {
            let invocations: usize = s.requests.iter().map(Vec::len).sum();
            // Alternate which goes first, so neither always follows the other.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let process = if which == 0 { &s.handler } else { &floor };
                let before = receiver.events();
                let (wall, cpu) = drive(process, &s.requests).await;
                runs.delivered[which] = receiver.events() - before;
                runs.cpu[which].push(cpu * 1e3 / invocations as f64);
                runs.rate[which].push((invocations * s.events) as f64 / wall);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    scenarios
        .iter()
        .zip(runs)
        .map(|(s, r)| report(s.name, &r, rounds))
        .collect()
}

/// Prints and returns one scenario's medians and median per-round ratios.
fn report(name: &str, r: &Runs, rounds: usize) -> Value {
    let ratios = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let cpu_ratio = ratios(&r.cpu[1], &r.cpu[0]);
    let rate_ratio = ratios(&r.rate[0], &r.rate[1]);
    let (cpu_h, cpu_f) = (median(r.cpu[0].clone()), median(r.cpu[1].clone()));
    let (rate_h, rate_f) = (median(r.rate[0].clone()), median(r.rate[1].clone()));
    println!("{name}, medians of {rounds} interleaved rounds:");
    println!(
        "  CPU per invocation: handler {cpu_h:.1} ms, floor handler {cpu_f:.1} ms; floor / handler {cpu_ratio:.2}"
    );
    println!(
        "  Events/s, 8 partitions: handler {rate_h:.0}, floor handler {rate_f:.0}; handler / floor {rate_ratio:.2} (Events delivered per run: {} / {})",
        r.delivered[0], r.delivered[1]
    );
    json!({"scenario": name, "cpu_ms_handler": cpu_h, "cpu_ms_floor": cpu_f, "cpu_ratio": cpu_ratio,
           "events_per_s_handler": rate_h, "events_per_s_floor": rate_f, "rate_ratio": rate_ratio,
           "delivered_per_run": r.delivered, "cpu_ms": r.cpu, "events_per_s": r.rate})
}

/// The in-cluster forwarder's design, one POST per Event (`AUDIT_WEBHOOK_FORMAT=event`),
/// against the handler's `EventList`s: Events/s on the small Events, medians of `rounds`.
async fn per_event(bin: &str, receiver: &CountingReceiver, rounds: usize) -> Value {
    let webhook = receiver.url("/k8s_audit");
    let requests = partitions(1, |tag| small_bodies(tag, 100, 20));
    let lists = Process::start(bin, &webhook, &[]).await;
    let single = [("AUDIT_WEBHOOK_FORMAT", "event".to_string())];
    let events = Process::start(bin, &webhook, &single).await;
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let (a, _) = drive(&lists, &requests).await;
        let (b, _) = drive(&events, &requests).await;
        ratios.push(a / b);
    }
    let ratio = median(ratios);
    println!("one POST per Event: {ratio:.2}x the Events/s of EventLists (small Events)");
    json!({"per_event_vs_event_list": ratio})
}

#[tokio::main]
async fn main() {
    let out = PathBuf::from(
        std::env::var("LOAD_OUT")
            .unwrap_or_else(|_| format!("{}/target/perf", env!("CARGO_MANIFEST_DIR"))),
    );
    // `LOAD_PLOT=<load.json>`: draw the plot of earlier results again, next to them.
    if let Ok(path) = std::env::var("LOAD_PLOT") {
        let text = std::fs::read_to_string(&path).expect("read the results");
        let results: Value = serde_json::from_str(&text).expect("results JSON");
        let svg = PathBuf::from(&path).with_extension("svg");
        std::fs::write(&svg, plot::plot(&results)).expect("write plot");
        println!("plot: {}", svg.display());
        return;
    }
    let rounds: usize = std::env::var("LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let parts = std::env::var("LOAD_PARTS").unwrap_or_else(|_| "startup,memory,floor".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let bins = binaries();
    let receiver = CountingReceiver::start().await.expect("receiver");
    let webhook = receiver.url("/k8s_audit");
    let mut results =
        json!({"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)});
    results["alerts"] = alerts::alert_latency(&bins.0, &webhook).await;
    if std::env::var("LOAD_SCENARIO").as_deref() == Ok("alerts") {
        return;
    }
    if part("startup") {
        results["startup"] = startup(&bins.0, &webhook).await;
    }
    if part("memory") {
        results["memory"] = json!(memories(&bins.0, &webhook).await);
    }
    if part("floor") {
        results["versus_floor"] = json!(versus_floor(&bins, &receiver, rounds).await);
    }
    if part("per-event") {
        results["per_event"] = per_event(&bins.0, &receiver, rounds).await;
    }
    std::fs::create_dir_all(&out).expect("output directory");
    let json_path = out.join("load.json");
    let text = serde_json::to_string_pretty(&results).expect("json");
    std::fs::write(&json_path, text).expect("write results");
    let svg_path = out.join("load.svg");
    std::fs::write(&svg_path, plot::plot(&results)).expect("write plot");
    println!(
        "results: {} and {}",
        json_path.display(),
        svg_path.display()
    );
}
