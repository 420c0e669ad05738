//! Input as AKS writes it, end to end through the real binary: a byte order mark in every
//! host shape, and Events streamed under both audit categories.

use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};

use crate::helpers::*;

/// An event body that starts with `EF BB BF` and a valid envelope is converted, whichever
/// way the host encodes the trigger, and its Event sent with the bytes its record held.
#[tokio::test]
async fn a_leading_bom_is_accepted_in_every_host_shape() {
    let receiver = start_exact_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let shapes = [
        Shape::ManyBinary,
        Shape::ManyString,
        Shape::OneString,
        Shape::OneBinary,
        Shape::StructuredArray,
    ];
    let mut expected = Vec::new();
    let mut all = Vec::new();
    for (i, shape) in shapes.into_iter().enumerate() {
        let event = audit_event(&format!("bom-{i}"), 0);
        let mut body = b"\xEF\xBB\xBF".to_vec();
        body.extend(envelope(vec![record("kube-audit", &event)]));
        all.push(body.clone());
        let request = build_request(shape, &[body], &mut SimPartition::new("0"), None).unwrap();
        let answer = handler
            .host
            .invoke("EventHubForwarder", request)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{shape:?}: {}", answer.body);
        assert!(
            answer.body.contains("converted=1") && answer.body.contains("malformed=0"),
            "{shape:?}: {}",
            answer.body
        );
        expected.push(event);
    }
    assert_same_events(receiver.receiver.events(), &expected);
    assert_exact_events(&receiver.sent(), &all, &expected, str::to_string);
}

/// A diagnostic setting streaming both `kube-audit` and `kube-audit-admin`: within an
/// invocation each Event is delivered once, and the handler warns once per cluster, naming
/// the fix, however many invocations repeat it.
#[tokio::test]
async fn an_event_under_both_categories_is_delivered_once_with_one_warning_per_cluster() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let both = |cluster: &str, id: &str| {
        let update = audit_event(&format!("{id}-update"), 0);
        let get =
            audit_event(&format!("{id}-get"), 0).replace(r#""verb":"update""#, r#""verb":"get""#);
        let bodies = vec![
            envelope(vec![
                record_from(&cluster_id(cluster), "kube-audit", &update),
                record_from(&cluster_id(cluster), "kube-audit", &get),
            ]),
            envelope(vec![record_from(
                &cluster_id(cluster),
                "kube-audit-admin",
                &update,
            )]),
        ];
        (bodies, vec![update, get])
    };
    let (first, mut expected) = both("aks-a", "a1");
    let answer = handler.invoke_bodies(&first, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("duplicates=1"), "{}", answer.body);

    let (again, more) = both("aks-a", "a2");
    let (other, others) = both("aks-b", "b1");
    expected.extend(more);
    expected.extend(others);
    let answer = handler.invoke_bodies(&[again, other].concat(), "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("duplicates=2"), "{}", answer.body);

    assert_same_events(receiver.receiver.events(), &expected);
    assert_eq!(receiver.receiver.stats().duplicates, 0);
    let log = handler.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("streams both kube-audit and kube-audit-admin"))
        .collect();
    assert_eq!(warnings.len(), 2, "one per cluster:\n{log}");
    assert!(
        warnings[0].contains("aks-a") && warnings[1].contains("aks-b"),
        "{log}"
    );
    assert!(warnings[0].contains("stream one category"), "{log}");
}
