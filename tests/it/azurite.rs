//! Azurite's blob service for the tool tests: started by the test on a free loopback port
//! from `target/azurite` (installed by `scripts/azurite.sh`, which `.ci/run` runs first), and
//! containers created with a SharedKey-signed request, as any Azure SDK does.
//!
//! When Azurite is not installed, a test fails if `CI_REQUIRE_AZURITE=1` (CI sets
//! it) and otherwise skips with a loud message.

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
    /// Starts it, or returns `None` (after saying so loudly) when it is not installed and
    /// not required.
    pub async fn start() -> Option<Self> {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/azurite/node_modules/.bin/azurite-blob");
        if !bin.exists() {
            let required = std::env::var("CI_REQUIRE_AZURITE").is_ok_and(|v| v == "1");
            let message = format!(
                "Azurite is not installed at {}: run `bash scripts/azurite.sh --check` once (needs npm)",
                bin.display()
            );
            assert!(!required, "{message}");
            // Written to the real stderr: the test harness would swallow `eprintln!`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n!!! SKIPPED (CI runs it with CI_REQUIRE_AZURITE=1): {message}\n")
                    .as_bytes(),
            );
            return None;
        }
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
        Some(azurite)
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
