//! A hostile audit webhook on 127.0.0.1, over raw TCP so it can misbehave in every way a
//! receiver can: redirect, refuse, answer `Retry-After` with nonsense, echo the request
//! headers, reset, stall after the status line or never answer. A decision function picks the
//! behaviour of each request from the Events it carries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the receiver does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// Answer this status with these extra headers and body; a 2xx means the Events are kept.
    Answer(u16, Vec<(String, String)>, String),
    /// Answer after a delay.
    Slow(Duration, u16),
    /// Answer `200` with a `Content-Length` it never completes: the Events are kept.
    StallAfterOk,
    /// Reset the connection without answering.
    Reset,
    /// Keep the connection open and never answer.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request line, e.g. `POST /k8s_audit HTTP/1.1`.
    pub line: String,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
    /// The `auditID`s of the Events in the body.
    pub ids: Vec<String>,
}

impl Request {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Decide = dyn Fn(&Request, usize) -> Act + Send + Sync;

/// A running hostile receiver.
#[derive(Clone)]
pub struct Rogue {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Every request, in arrival order.
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// `auditID`s of the Events kept (answered 2xx), with repeats.
    pub kept: Arc<Mutex<Vec<String>>>,
}

impl Rogue {
    /// Starts a receiver whose behaviour for the n-th request (from 0) is `decide(request, n)`.
    pub async fn start(decide: impl Fn(&Request, usize) -> Act + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let rogue = Self {
            base,
            requests: Arc::default(),
            kept: Arc::default(),
        };
        let decide: Arc<Decide> = Arc::new(decide);
        let state = rogue.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, state.clone(), decide.clone()));
            }
        });
        rogue
    }

    /// The receiver's URL for `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Kept `auditID`s, sorted and without repeats.
    pub fn kept_unique(&self) -> Vec<String> {
        let mut ids = self.kept.lock().unwrap().clone();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Reads one request: head and a `Content-Length` body. `None` when the peer closes first.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((head, buf[end + 4..end + 4 + length].to_vec()));
        }
    }
}

fn parse(head: &str, body: &[u8]) -> Request {
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let events = match value.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ if value.get("auditID").is_some() => vec![value],
        _ => Vec::new(),
    };
    let ids = events
        .iter()
        .filter_map(|e| e["auditID"].as_str().map(str::to_owned))
        .collect();
    Request { line, headers, ids }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn serve(mut stream: TcpStream, state: Rogue, decide: Arc<Decide>) {
    while let Some((head, body)) = read_request(&mut stream).await {
        let request = parse(&head, &body);
        let n = {
            let mut requests = state.requests.lock().unwrap();
            requests.push(request.clone());
            requests.len() - 1
        };
        let act = decide(&request, n);
        let keep = |state: &Rogue| state.kept.lock().unwrap().extend(request.ids.clone());
        match act {
            Act::Answer(code, headers, text) => {
                if (200..300).contains(&code) {
                    keep(&state);
                }
                let mut answer = format!(
                    "HTTP/1.1 {code} {}\r\nContent-Length: {}\r\n",
                    status_text(code),
                    text.len()
                );
                for (name, value) in headers {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\n");
                answer.push_str(&text);
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Act::Slow(delay, code) => {
                tokio::time::sleep(delay).await;
                if (200..300).contains(&code) {
                    keep(&state);
                }
                let answer = format!(
                    "HTTP/1.1 {code} {}\r\nContent-Length: 0\r\n\r\n",
                    status_text(code)
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Act::StallAfterOk => {
                keep(&state);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"ok\":")
                    .await;
                tokio::time::sleep(Duration::from_secs(120)).await;
                return;
            }
            Act::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Act::Hang => {
                tokio::time::sleep(Duration::from_secs(120)).await;
                return;
            }
        }
    }
}

/// A plain 200.
pub fn ok() -> Act {
    Act::Answer(200, Vec::new(), String::new())
}

/// A bare status.
pub fn status(code: u16) -> Act {
    Act::Answer(code, Vec::new(), String::new())
}
