//! The `check-config` command: validate the handler's `AUDIT_*` settings (from the environment
//! or a `local.settings.json`) exactly as the handler does at start-up, print the effective
//! configuration with secrets masked, and optionally probe each webhook with an empty
//! `EventList`. What an operator runs before publishing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::time::Instant;

use crate::alerts::card::probe_body;
use crate::alerts::{AlertRules, Notifier};
use crate::config::values::{show_duration, show_size, show_switch};
use crate::config::vars::{self, def};
use crate::config::{parse_duration_within, Config};
use crate::delivery::{Delivery, RetrySettings, Webhook};
use crate::pipeline::Forwarder;
use crate::redact::redact_url;

/// Options of `check-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckConfigArgs {
    /// Read the settings from this `local.settings.json` (its `Values`) instead of the
    /// environment. Relative file settings (AUDIT_POLICY_FILE, certificates) are read next to it.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Also POST one empty EventList to each webhook and report its status, TLS and latency,
    /// and send a test card to each alert notifier (AUDIT_ALERTS).
    #[arg(long)]
    pub probe: bool,
    /// Time limit of each probe, retries included (the bounds of AUDIT_WEBHOOK_TIMEOUT).
    #[arg(long, default_value = "10s", value_parser = probe_timeout)]
    pub probe_timeout: Duration,
}

/// `--probe-timeout`: within the bounds of one attempt (`AUDIT_WEBHOOK_TIMEOUT`), so the
/// probe's deadline is always a time that exists.
///
/// # Errors
/// A duration outside those bounds, or not a duration.
pub fn probe_timeout(text: &str) -> Result<Duration, String> {
    let bounds = &def::WEBHOOK_TIMEOUT.kind;
    parse_duration_within(text, bounds.min, bounds.max)
}

/// The variables of a `local.settings.json` file (`Values`), as `func start` sets them.
///
/// # Errors
/// When the file cannot be read or has no `Values` object of strings.
pub fn read_settings_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct File {
        values: BTreeMap<String, serde_json::Value>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(path, e))?;
    let file: File = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a local.settings.json file (an object with \"Values\")",
            path.display()
        )
    })?;
    let mut values = BTreeMap::new();
    for (name, value) in file.values {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => value.to_string(),
            _ => anyhow::bail!("{}: Values.{name} is not a string", path.display()),
        };
        values.insert(name, text);
    }
    if !values.contains_key("FUNCTIONS_APP_ROOT_PATH") {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        values.insert(
            "FUNCTIONS_APP_ROOT_PATH".into(),
            dir.to_string_lossy().into_owned(),
        );
    }
    Ok(values)
}

/// Why `path` cannot be read; a missing file whose `<path>.example` exists (the repository
/// ships `local.settings.json.example`) says to copy that first.
fn unreadable(path: &Path, error: std::io::Error) -> anyhow::Error {
    let mut example = path.as_os_str().to_owned();
    example.push(".example");
    let example = Path::new(&example);
    if error.kind() == std::io::ErrorKind::NotFound && example.is_file() {
        let (to, from) = (path.display(), example.display());
        return anyhow::anyhow!("reading {to}: {error}; copy {from} first: cp {from} {to}");
    }
    anyhow::Error::new(error).context(format!("reading {}", path.display()))
}

/// Validates the configuration as the handler does; returns it.
///
/// # Errors
/// The first invalid or missing setting, named (values of secrets never shown).
pub fn load(args: &CheckConfigArgs) -> anyhow::Result<Config> {
    match &args.settings {
        Some(path) => {
            let values = read_settings_file(path)?;
            Config::from_vars(values)
                .with_context(|| format!("{}: invalid configuration", path.display()))
        }
        None => Config::from_env().context("invalid configuration"),
    }
}

/// The effective configuration: a line per route with its webhook settings, then a line per
/// other setting under its label ([`vars::Describe::label`]), in the order of the
/// configuration reference; secrets masked (URLs redacted, tokens, passwords and keys shown
/// only as set or not).
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "routes:");
    for route in &config.forwarder.routes {
        match &route.destination {
            None => {
                let _ = writeln!(out, "  {:<12} -> drop", route.name);
            }
            Some(d) => {
                let c = &d.client;
                let _ = writeln!(
                    out,
                    "  {:<12} -> {} (format {:?}, policy {}, bearer token {}, basic auth {}, custom CA {}, client certificate {}, TLS verification {}, extra headers {})",
                    route.name,
                    redact_url(&d.url),
                    d.format,
                    if d.policy.is_some() { "own" } else { "shared" },
                    set(c.bearer.is_some()),
                    set(c.basic.is_some()),
                    set(c.ca_pem.is_some()),
                    set(c.identity_pem.is_some()),
                    if c.insecure_skip_verify { "OFF" } else { "on" },
                    c.headers.len(),
                );
                let limits = receiver_limits(d, &config.forwarder);
                let _ = writeln!(out, "  {:<12}    {limits}", "");
            }
        }
    }
    for setting in vars::SETTINGS {
        if let Some(value) = effective(config, setting.name()) {
            let _ = writeln!(out, "{:<22} {value}", setting.label());
        }
    }
    describe_alerts(&mut out, config.forwarder.alerts.as_deref());
    out
}

/// The value in effect of a setting that has a line of its own, as a user writes it; `None`
/// for the settings shown on each route's lines (webhook, format, credentials, TLS, headers,
/// the receiver and its truncation limits) and `AUDIT_POLICY_FILE`, shown on the `policy`
/// line.
fn effective(config: &Config, name: &str) -> Option<String> {
    let (s, host) = (&config.forwarder, &config.host);
    Some(match name {
        vars::CATEGORIES => {
            let categories: Vec<&str> = s.categories.iter().map(String::as_str).collect();
            categories.join(",")
        }
        vars::BATCH_MAX_EVENTS => s.batch_max_events.to_string(),
        vars::BATCH_MAX_BYTES => show_size(s.batch_max_bytes),
        vars::WEBHOOK_TIMEOUT => show_duration(s.retry.attempt_timeout),
        vars::DELIVERY_DEADLINE => show_duration(s.delivery_deadline),
        vars::WEBHOOK_CONCURRENCY => s.concurrency.to_string(),
        vars::RETRY_INITIAL_BACKOFF => show_duration(s.retry.initial_backoff),
        vars::RETRY_MAX_BACKOFF => show_duration(s.retry.max_backoff),
        vars::ISOLATE_AFTER_RETRIES => s.isolate_after_retries.to_string(),
        vars::BODY_READ_TIMEOUT => show_duration(host.body_read_timeout),
        vars::SHUTDOWN_GRACE => show_duration(host.shutdown_grace),
        vars::MAX_BODY_BYTES => show_size(host.max_body_bytes),
        vars::MAX_BYTES_IN_FLIGHT => show_size(host.max_bytes_in_flight),
        vars::MAX_RECORDS_PER_EVENT => s.max_records_per_event.to_string(),
        vars::POLICY => match &s.policy {
            Some(_) => "set (applied to routes without their own)".into(),
            None => "none (every Event forwarded as written)".into(),
        },
        vars::CLUSTER_ANNOTATIONS => show_switch(s.cluster_annotations).into(),
        vars::ALERTS => match &s.alerts {
            Some(a) => format!(
                "{} rule(s), {} notifier(s) (below; URLs never shown)",
                a.rules.len(),
                a.notifiers.len()
            ),
            None => "none".into(),
        },
        vars::DEADLETTER_BINDING => host
            .deadletter_binding
            .clone()
            .unwrap_or_else(|| "off".into()),
        _ => return None,
    })
}

/// The alert rules and notifiers by name and type; a notifier's URL is never shown.
fn describe_alerts(out: &mut String, alerts: Option<&AlertRules>) {
    let Some(alerts) = alerts else {
        return;
    };
    let notifiers: Vec<String> = alerts
        .notifiers
        .iter()
        .map(|n| format!("{} ({}, url set)", n.name, n.kind.name()))
        .collect();
    let _ = writeln!(out, "{:<22} {}", "alert notifiers", notifiers.join(", "));
    for rule in &alerts.rules {
        let to: Vec<String> = rule
            .notify
            .iter()
            .map(|i| {
                let n = &alerts.notifiers[*i];
                format!("{} ({})", n.name, n.kind.name())
            })
            .collect();
        let _ = writeln!(
            out,
            "  alert {:<16} severity {} -> {}",
            rule.name,
            rule.severity.name(),
            to.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{:<22} {} window, {} Events listed per card",
        "alert grouping",
        humantime::format_duration(alerts.window),
        alerts.listed
    );
}

/// Sends a test card to each alert notifier; one line each (name and result, never the URL)
/// and how many did not take it.
async fn probe_alerts(config: &Config, timeout: Duration) -> anyhow::Result<usize> {
    let Some(rules) = &config.forwarder.alerts else {
        return Ok(0);
    };
    let retry = RetrySettings {
        attempt_timeout: timeout,
        ..config.forwarder.retry
    };
    let mut failed = 0;
    for n in &rules.notifiers {
        let notifier = Notifier::new(n, retry)?;
        let start = Instant::now();
        let body = Bytes::from(probe_body(n.kind).to_string());
        let result = match notifier.send(body, start + timeout).await {
            Ok(attempts) => format!("accepted ({attempts} attempt(s))"),
            Err(e) => {
                failed += 1;
                format!("failed after {} attempt(s): {}", e.attempts, e.reason)
            }
        };
        outln!(
            "probe alert {:<12} ({}) {result} in {} ms",
            n.name,
            n.kind.name(),
            start.elapsed().as_millis()
        );
    }
    Ok(failed)
}

/// A route's receiver profile and the limits in force on it (`delivery::profile`).
fn receiver_limits(d: &crate::delivery::Destination, s: &crate::pipeline::Settings) -> String {
    let shaping = crate::delivery::Shaping::new(d.receiver, d.format, s.truncate);
    let t = shaping.truncation;
    let truncation = if t.enabled {
        format!(
            "truncation on: Events over {} bytes ({}) lose requestObject and responseObject",
            t.max_event_size,
            t.measure.name()
        )
    } else {
        "truncation off".to_string()
    };
    format!(
        "receiver {}: {truncation}; bodies of at most {} bytes",
        d.receiver,
        shaping.batch_max_bytes(s.batch_max_bytes)
    )
}

fn set(yes: bool) -> &'static str {
    if yes {
        "set"
    } else {
        "not set"
    }
}

/// What one probe found.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The route's name.
    pub route: String,
    /// The webhook, redacted.
    pub url: String,
    /// Whether it answered 2xx.
    pub ok: bool,
    /// `HTTP 200`, `refused: …`, `failed: …`.
    pub result: String,
    /// `https (system roots)`, `https (custom CA, client certificate)`, `plain http`.
    pub tls: String,
    /// From the first byte sent to the final answer, retries included.
    pub latency: Duration,
}

/// POSTs one empty `EventList` to each delivering route's webhook.
///
/// # Errors
/// When a client cannot be built (a bad certificate).
pub async fn probe(config: &Config, timeout: Duration) -> anyhow::Result<Vec<Probe>> {
    let body = Bytes::from_static(
        br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}"#,
    );
    let retry = RetrySettings {
        attempt_timeout: timeout,
        ..config.forwarder.retry
    };
    let mut probes = Vec::new();
    for route in &config.forwarder.routes {
        let Some(d) = &route.destination else {
            continue;
        };
        let webhook = Webhook::new(d.url.clone(), retry, &d.client)?;
        let start = Instant::now();
        let outcome = webhook.deliver(body.clone(), start + timeout).await;
        let latency = start.elapsed();
        let (ok, result) = match outcome {
            Delivery::Delivered { attempts } => (true, format!("accepted ({attempts} attempt(s))")),
            Delivery::Rejected { reason, .. } => (false, format!("refused: {reason}")),
            Delivery::Failed { reason, attempts } | Delivery::Halted { reason, attempts } => (
                false,
                format!("failed after {attempts} attempt(s): {reason}"),
            ),
        };
        let c = &d.client;
        let tls = if d.url.scheme() == "https" {
            let mut parts = vec![if c.ca_pem.is_some() {
                "custom CA"
            } else {
                "system roots"
            }];
            if c.identity_pem.is_some() {
                parts.push("client certificate");
            }
            if c.insecure_skip_verify {
                parts = vec!["VERIFICATION OFF"];
            }
            format!("https ({})", parts.join(", "))
        } else {
            "plain http (no TLS)".into()
        };
        probes.push(Probe {
            route: route.name.clone(),
            url: redact_url(&d.url),
            ok,
            result,
            tls,
            latency,
        });
    }
    Ok(probes)
}

/// Runs `check-config`: prints the configuration (and probes), fails on any error.
///
/// # Errors
/// An invalid setting, or a probe that did not get a 2xx.
pub async fn run(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let config = load(args)?;
    // The HTTP clients too, as the handler builds them at start-up: TLS material that parses
    // as PEM can still be refused here.
    Forwarder::new(config.forwarder.clone()).context("invalid webhook TLS configuration")?;
    outln!("check-config: the configuration is valid; effective settings (secrets masked):");
    out!("{}", describe(&config));
    if !args.probe {
        return Ok(());
    }
    let probes = probe(&config, args.probe_timeout).await?;
    let mut failed = 0;
    for p in &probes {
        outln!(
            "probe {:<12} {} {} in {} ms, {}",
            p.route,
            p.url,
            p.result,
            p.latency.as_millis(),
            p.tls
        );
        failed += usize::from(!p.ok);
    }
    anyhow::ensure!(failed == 0, "{failed} webhook(s) did not accept the probe");
    let failed = probe_alerts(&config, args.probe_timeout).await?;
    anyhow::ensure!(
        failed == 0,
        "{failed} alert notifier(s) did not accept the test card"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings shown on each route's line rather than on a line of their own.
    const ON_ROUTE_LINES: &[&str] = &[
        vars::WEBHOOK_URL,
        vars::WEBHOOK_FORMAT,
        vars::WEBHOOK_BEARER_TOKEN,
        vars::WEBHOOK_USERNAME,
        vars::WEBHOOK_PASSWORD,
        vars::WEBHOOK_CA,
        vars::WEBHOOK_CLIENT_CERT,
        vars::WEBHOOK_CLIENT_KEY,
        vars::WEBHOOK_INSECURE_SKIP_VERIFY,
        vars::WEBHOOK_HEADERS,
        vars::ROUTES,
        vars::POLICY_FILE,
        vars::RECEIVER,
        vars::TRUNCATE_ENABLED,
        vars::TRUNCATE_MAX_EVENT_SIZE,
        vars::TRUNCATE_MAX_BATCH_SIZE,
    ];

    /// Every declared setting is shown by `check-config`, and with nothing set but the
    /// webhook, each line shows the default its declaration gives: a setting added without a
    /// line here, or a default that differs from what the settings read, fails.
    #[test]
    fn shows_every_setting_at_its_declared_default() {
        let config = Config::from_lookup(|name| {
            (name == vars::WEBHOOK_URL).then(|| "http://127.0.0.1:9/k8s_audit".to_string())
        })
        .unwrap();
        let shown = describe(&config);
        for setting in vars::SETTINGS {
            let name = setting.name();
            let Some(value) = effective(&config, name) else {
                assert!(
                    ON_ROUTE_LINES.contains(&name),
                    "check-config does not show {name}"
                );
                continue;
            };
            assert!(!ON_ROUTE_LINES.contains(&name), "{name} is shown twice");
            if let Some(default) = setting.default_shown() {
                assert_eq!(value, default, "{name}: check-config shows another default");
            }
            let line = format!("{:<22} {value}\n", setting.label());
            assert!(shown.contains(&line), "{line:?} not in {shown}");
        }
        for part in [
            "format",
            "bearer token",
            "basic auth",
            "custom CA",
            "client certificate",
            "receiver generic: truncation off; bodies of at most 10485760 bytes",
        ] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
    }

    #[test]
    fn a_missing_settings_file_says_to_copy_its_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.settings.json");
        let alone = read_settings_file(&path).unwrap_err().to_string();
        assert!(
            alone.starts_with("reading ") && !alone.contains("copy"),
            "{alone}"
        );
        std::fs::write(dir.path().join("local.settings.json.example"), "{}").unwrap();
        let hint = format!("{:#}", read_settings_file(&path).unwrap_err());
        let cp = format!("cp {0}.example {0}", path.display());
        assert!(hint.contains(&cp), "{hint}");
    }

    /// Row 19: a probe timeout too long for a deadline to exist (it used to panic with exit
    /// code 101) or too short for any answer is refused by the argument parser.
    #[test]
    fn probe_timeout_is_bounded() {
        for bad in ["400000000000y", "1ns", "11m", "soon"] {
            assert!(probe_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(probe_timeout("10s"), Ok(Duration::from_secs(10)));
    }
}
