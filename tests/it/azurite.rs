//! Azurite's blob service for the tool tests: started by the test on a free loopback port
//! from `target/azurite` (installed by `scripts/azurite.sh`, which `.ci/run` runs first), and
//! containers created with a SharedKey-signed request, as any Azure SDK does.
//!
//! When Azurite is not installed yet, the first test that needs it installs it from npm;
//! without npm the storage tests fail, saying so.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use super::helpers::free_port;

/// Azurite's well-known development account (Azurite docs, "Connection strings").
pub const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Installs Azurite once per test run; the tests that need it wait for the one install.
fn install_once(bin: &std::path::Path) {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if bin.exists() {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/azurite.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg("--install")
        .stdin(Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && bin.exists(),
        "the storage tests need Azurite, installed from npm by `bash scripts/azurite.sh --install` \
         (it failed: is Node.js with npm installed?); expected {}. Without npm, run the other \
         tests with `cargo test --locked -- --skip azurite::` (the storage tests are then \
         reported as filtered out, not passed)",
        bin.display()
    );
}

/// A running Azurite blob service, stopped when dropped.
pub struct Azurite {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Azurite {
    /// Starts it, installing it first under `target/azurite` (with npm, through
    /// `scripts/azurite.sh --install`) when it is not there yet. A machine without npm fails
    /// the storage tests with a message saying so: they are never skipped.
    pub async fn start() -> Self {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/azurite/node_modules/.bin/azurite-blob");
        install_once(&bin);
        let port = free_port();
        let data = tempfile::tempdir().expect("temp dir");
        let child = Command::new(&bin)
            .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start azurite");
        let azurite = Self {
            child,
            port,
            _data: data,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let start = std::time::Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Azurite did not listen on {addr} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        azurite
    }

    /// The connection string of the development account on this port.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://127.0.0.1:{}/{ACCOUNT};",
            self.port
        )
    }

    /// Creates `container` (Put Container, SharedKey authorization).
    pub async fn create_container(&self, container: &str) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .expect("key");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let signature = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
        let url = format!(
            "http://127.0.0.1:{}/{ACCOUNT}/{container}?restype=container",
            self.port
        );
        let response = reqwest::Client::new()
            .put(url)
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("Authorization", format!("SharedKey {ACCOUNT}:{signature}"))
            .header("Content-Length", "0")
            .send()
            .await
            .expect("create container");
        let status = response.status();
        assert!(
            status.is_success(),
            "create container {container}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
}
