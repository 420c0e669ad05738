//! The `convert` command: turn diagnostic files (Event Hub event bodies, a `{"records":[…]}`
//! envelope, or `PT1H.json` JSON lines of records) into audit Events, the handler's
//! conversion and optional Policy, written as JSON lines (one Event a line, exact bytes) or
//! as one `EventList`: input for `jq`, for Falco's k8saudit file source, for tests.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::archive::LineSplitter;
use super::checkpoint::BlobProgress;
use super::hostsim::load_bodies;
use std::sync::Arc;

use crate::alerts::AlertRules;
use crate::audit::{encode, AuditEvent, Policy, WebhookFormat};
use crate::azure::{
    convert_body, BodyOrigin, ClusterId, Conversion, ConvertTally, DEFAULT_CATEGORIES,
};
use crate::pipeline::steps::{Chain, Place, PolicyStep, StepTally, Verdict};
use crate::pipeline::Route;

/// How `convert` writes Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One Event a line, its exact bytes.
    Lines,
    /// One `EventList` object, as kube-apiserver's webhook sends.
    Eventlist,
}

/// Options of `convert`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// The diagnostic file: a JSON array of Event Hub event bodies, one envelope, or JSON lines
    /// of records (`PT1H.json`).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write; standard output when not given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// JSON lines of Events, or one EventList.
    #[arg(long, value_enum, default_value = "lines")]
    pub format: Output,
    /// An audit Policy file (audit.k8s.io/v1 Policy, YAML or JSON) to apply.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Diagnostic categories that hold audit Events (comma-separated).
    #[arg(long, default_value = DEFAULT_CATEGORIES)]
    pub categories: String,
    /// Alert rules (an AUDIT_ALERTS document): instead of the Events, write which Events each
    /// rule would alert on, one line each (after --policy, as the handler offers alerts the
    /// Events its Policy keeps). Nothing is sent.
    #[arg(long, conflicts_with = "format")]
    pub alerts: Option<PathBuf>,
}

/// What `convert` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Conversion counts.
    pub tally: ConvertTally,
    /// Events dropped by the Policy.
    pub policy_dropped: u64,
    /// Events the Policy cannot read (left out, each named on standard error).
    pub policy_unreadable: u64,
    /// Events written.
    pub written: u64,
}

/// Converts `args.input` and writes the Events.
///
/// # Errors
/// When the input or the Policy cannot be read, or the output written.
pub fn run(args: &ConvertArgs) -> anyhow::Result<ConvertReport> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let name = args.input.display().to_string();
    let mut bad_lines = 0;
    let whole = text.trim_start_matches('\u{feff}');
    let bodies = match serde_json::from_str::<&serde_json::value::RawValue>(whole) {
        // One JSON value: an array of event bodies, or one envelope or record.
        Ok(_) => load_bodies(&text, 500).with_context(|| name.clone())?,
        // JSON lines of records: a bad line is counted and named, not fatal.
        Err(_) => {
            let mut lines = LineSplitter::new(BlobProgress::default());
            lines.push(text.trim_start_matches('\u{feff}').as_bytes());
            lines.finish();
            let mut bodies = Vec::new();
            while let Some(batch) = lines.next_batch(500, true) {
                let (body, dead, counts) = batch.body(None, None, &name);
                bad_lines += counts.malformed;
                for item in dead {
                    eprintln!("convert: skipped {}", item.reason);
                }
                bodies.extend(body);
            }
            if lines.truncated_tail() {
                bad_lines += 1;
                eprintln!("convert: skipped {name}: the last line is incomplete");
            }
            bodies
        }
    };
    let policy = match &args.policy {
        Some(path) => Some(Policy::from_file(path)?),
        None => None,
    };
    let categories: BTreeSet<String> = args
        .categories
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let mut conversion = Conversion::default();
    for (index, body) in bodies.iter().enumerate() {
        let origin = BodyOrigin {
            index,
            sequence_number: None,
        };
        convert_body(body, origin, &categories, &mut conversion);
    }
    let mut report = ConvertReport {
        tally: conversion.tally.clone(),
        ..ConvertReport::default()
    };
    report.tally.malformed_records += bad_lines;
    report.tally.records += bad_lines;
    let (events, steps) = policy_step(policy, conversion.events);
    report.policy_dropped = steps.policy_dropped;
    report.policy_unreadable = steps.policy_unreadable;
    if let Some(rules) = &args.alerts {
        report.written = write_matches(args, rules, &events)?;
        return Ok(report);
    }
    report.written = events.len() as u64;
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match args.format {
        Output::Lines => {
            for event in &events {
                out.write_all(event.json().as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        Output::Eventlist => {
            out.write_all(&encode(WebhookFormat::EventList, &events))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush().context("writing the Events")?;
    Ok(report)
}

/// The handler's Policy step, alone, over `events`: an Event the Policy cannot read is left
/// out and named on standard error, neither written nor dropped silently.
fn policy_step(policy: Option<Policy>, events: Vec<AuditEvent>) -> (Vec<AuditEvent>, StepTally) {
    let route = Route::policy_only("convert", policy.map(Arc::new));
    let mut chain = Chain::new(vec![Box::new(PolicyStep)]);
    let cluster = Arc::new(ClusterId::default());
    let place = Place {
        route: Some(&route),
        cluster: &cluster,
    };
    let mut kept = Vec::with_capacity(events.len());
    let mut tally = StepTally::default();
    for event in events {
        match chain.run(event, &place) {
            Verdict::Keep(event) => kept.push(event),
            Verdict::Drop(reason) => tally.count_drop(reason),
            Verdict::DeadLetter(item) => {
                let id = item
                    .event
                    .as_ref()
                    .and_then(|e| serde_json::from_str::<serde_json::Value>(e.get()).ok())
                    .and_then(|v| v["auditID"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "an Event".into());
                eprintln!("convert: left out {id}: {}", item.reason);
                tally.count_dead_letter(item.kind);
            }
        }
    }
    (kept, tally)
}

/// `convert --alerts`: one line per Event a rule matches (rule, severity, notifiers, who did
/// what where, when, `auditID`), as the handler would match it; counts per rule on standard
/// error. Returns the number of lines.
fn write_matches(
    args: &ConvertArgs,
    rules: &std::path::Path,
    events: &[AuditEvent],
) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(rules).with_context(|| format!("reading {}", rules.display()))?;
    // Nothing is sent: a notifier URL given by an app setting that is not set here is not
    // needed.
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| Some("https://not-sent.invalid/".into()))
    };
    let rules_doc = AlertRules::parse(&text, &lookup)
        .map_err(|e| anyhow::anyhow!("{}: {e}", rules.display()))?;
    let hits = rules_doc.select(events);
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut per_rule = vec![0u64; rules_doc.rules.len()];
    for hit in &hits {
        let rule = &rules_doc.rules[hit.rule];
        per_rule[hit.rule] += 1;
        let to: Vec<&str> = rule
            .notify
            .iter()
            .map(|i| rules_doc.notifiers[*i].name.as_str())
            .collect();
        writeln!(
            out,
            "{} ({}) -> {}: {} at {} (auditID {})",
            rule.name,
            rule.severity.name(),
            to.join(", "),
            hit.facts.line(),
            hit.facts.when,
            hit.facts.audit_id
        )?;
    }
    out.flush().context("writing the matches")?;
    for (rule, count) in rules_doc.rules.iter().zip(per_rule) {
        eprintln!(
            "convert --alerts: rule {} matched {count} Event(s)",
            rule.name
        );
    }
    Ok(hits.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::SAMPLES;

    #[test]
    fn samples_become_event_lines_with_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.json");
        std::fs::write(&input, SAMPLES).unwrap();
        let out = dir.path().join("out.jsonl");
        let args = ConvertArgs {
            input,
            out: Some(out.clone()),
            format: Output::Lines,
            policy: None,
            categories: DEFAULT_CATEGORIES.into(),
            alerts: None,
        };
        let report = run(&args).unwrap();
        assert_eq!(report.written, 8);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), 8);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["kind"], "Event");
            // Exact bytes: the line appears verbatim in the samples' log strings.
            let escaped = serde_json::to_string(line).unwrap();
            assert!(SAMPLES.contains(&escaped[1..escaped.len() - 1]), "{line}");
        }
        let list = ConvertArgs {
            format: Output::Eventlist,
            ..args
        };
        run(&list).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 8);
    }

    /// JSON lines with a line that is not JSON and an incomplete last line: both counted,
    /// the good records converted.
    #[test]
    fn bad_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"stageTimestamp":"2026-11-23T07:00:00Z","requestReceivedTimestamp":"2026-11-23T07:00:00Z"}"#;
        let record = serde_json::json!({"category": "kube-audit", "properties": {"log": event}});
        let input = dir.path().join("PT1H.json");
        let tail = r#"{"category":"kube-au"#;
        std::fs::write(&input, format!("{record}\nnot json\n{record}\n{tail}")).unwrap();
        let out = dir.path().join("out.jsonl");
        let report = run(&ConvertArgs {
            input,
            out: Some(out.clone()),
            format: Output::Lines,
            policy: None,
            categories: DEFAULT_CATEGORIES.into(),
            alerts: None,
        })
        .unwrap();
        assert_eq!(report.written, 2);
        assert_eq!(report.tally.malformed_records, 2);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{event}\n{event}\n")
        );
    }

    /// `convert --alerts` on the samples: the rule on kube-system changes matches Bob's patch
    /// of the coredns-custom ConfigMap only, and a notifier URL that is not set is not needed.
    #[test]
    fn alerts_show_which_events_would_alert() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.json");
        std::fs::write(&input, SAMPLES).unwrap();
        let rules = dir.path().join("alerts.yaml");
        std::fs::write(&rules, "notifiers:\n- {name: secops, type: teams, urlSetting: CONVERT_TEST_UNSET_URL}\nrules:\n- name: kube-system-changed\n  notify: [secops]\n  severity: high\n  match: {verbs: [create, update, patch, delete], namespaces: [kube-system]}\n- name: exec\n  notify: [secops]\n  match: {resources: [{resources: [pods/exec]}]}\n").unwrap();
        let out = dir.path().join("matches.txt");
        let report = run(&ConvertArgs {
            input,
            out: Some(out.clone()),
            format: Output::Lines,
            policy: None,
            categories: DEFAULT_CATEGORIES.into(),
            alerts: Some(rules),
        })
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(report.written, 2, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "exec (medium) -> secops: alice@contoso.com get pods/exec web-5d8f7 in shop (101)"
            ),
            "{text}"
        );
        assert!(lines[1].starts_with("kube-system-changed (high) -> secops: bob@contoso.com patch configmaps coredns-custom in kube-system (200)"), "{text}");
    }
}
