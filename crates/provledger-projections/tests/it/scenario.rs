//! A realistic ledger, checked view by view: lines, Transaction Manager, history.

use provledger_projections::{
    HistoryQuery, LineQuery, TransactionQuery, TransactionStatus, TransactionType,
};

use provledger_store::EventStore;

use crate::support::*;

/// WO-1001 through its life: change with apply-to-all, an early resend
/// (refused), a resend after the RSD, a refused change by an outsider, the
/// A-Flex line closing, onboarding, a refused change after PONR, a case.
fn life_of_wo1001(ledger: &mut Ledger) {
    place_wo1001_now(ledger);
    life_after_placement(ledger);
}

/// [`life_of_wo1001`] after WO-1001 is placed.
fn life_after_placement(ledger: &mut Ledger) {
    ledger
        .exec(
            "WO-1002",
            OLIVIA,
            "2026-11-20T11:00:00Z",
            place(
                "WO-1002",
                &[("1", "Sub200001", "A-SPK", "2027-01-10", "ops@other.example")],
            ),
        )
        .unwrap();
    // R4 apply to all lines, before the RSD.
    change_all_lines(ledger);
    // R3 (decided): nothing to resend before the RSD.
    ledger
        .exec("WO-1001", PAT, "2026-11-22T09:00:00Z", resend("1.2"))
        .unwrap();
    // After the RSD: the initial emails and the R11 escalations are caught up first.
    ledger
        .exec("WO-1001", OLIVIA, "2026-12-02T09:00:00Z", resend("1.2"))
        .unwrap();
    // R6: no access.
    ledger
        .exec(
            "WO-1001",
            EVE,
            "2026-12-03T09:00:00Z",
            change("1.2", "eve@elsewhere.example", false),
        )
        .unwrap();
    // R7: the A-Flex line closes on 2026-12-08, the A-WX line stays open.
    ledger.tick("WO-1001", "2026-12-09T00:00:00Z");
    // R5: PONR.
    ledger
        .exec("WO-1001", OLIVIA, "2026-12-10T09:00:00Z", onboard("org-77"))
        .unwrap();
    // R5: after PONR, a change (to all lines) is refused and recorded (R12).
    ledger
        .exec(
            "WO-1001",
            PAT,
            "2026-12-11T09:00:00Z",
            change("1.1", "late@customer.example", true),
        )
        .unwrap();
    ledger
        .exec("WO-1002", OLIVIA, "2026-12-12T09:00:00Z", case("1"))
        .unwrap();
}

#[test]
fn r1_to_r8_lines_show_the_folded_state() {
    let mut ledger = Ledger::new();
    let models = ledger.models();
    place_wo1001_now(&mut ledger);
    models.catch_up(&ledger.store).unwrap();
    let lines = models.lines(&LineQuery::default()).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].line_id, "1.1");
    assert_eq!(lines[0].subscription_id, "Sub100042");
    assert_eq!(lines[0].offer, "A-Flex");
    assert_eq!(lines[0].rsd.to_string(), "2026-12-01");
    assert_eq!(lines[0].status, "awaiting_provisioning_details");
    assert_eq!(lines[0].status_label, "Awaiting Provisioning Details");
    assert!(lines[0].provisioning_pending);
    assert_eq!(lines[0].initial_email_sent_at, None);
    assert_eq!(lines[0].partner, "Acme Partner");
    assert_eq!(lines[0].end_customer, "Contoso Ltd");

    life_after_placement(&mut ledger);
    models.catch_up(&ledger.store).unwrap();
    assert_eq!(models.checkpoint().unwrap(), ledger.head());

    let wo1001 = models
        .lines(&LineQuery {
            order_id: Some(order("WO-1001")),
            ..LineQuery::default()
        })
        .unwrap();
    let [flex, wx] = &wo1001[..] else {
        panic!("WO-1001 has two lines: {wo1001:?}");
    };
    // R7 then R5: the closed A-Flex line is onboarded; billing started on closure.
    assert_eq!(flex.status, "onboarded");
    assert!(flex.billing_started);
    assert!(flex.provisioning_pending);
    assert_eq!(flex.closes_at, Some(t("2026-12-08T00:00:00Z")));
    assert_eq!(flex.initial_email_sent_at, Some(t("2026-12-01T00:00:00Z")));
    assert_eq!(flex.escalated_at, Some(t("2026-12-02T00:00:00Z")));
    assert_eq!(flex.org_id.as_deref(), Some("org-77"));
    assert_eq!(flex.provisioning_contact, "new@customer.example");
    assert_eq!(wx.status, "onboarded");
    assert!(!wx.billing_started);
    assert_eq!(wx.resend_count, 1);
    assert_eq!(wx.closes_at, Some(t("2026-12-31T00:00:00Z")));

    let by_sub = models
        .lines(&LineQuery {
            subscription_id: Some(sub("Sub200001")),
            ..LineQuery::default()
        })
        .unwrap();
    assert_eq!(by_sub.len(), 1);
    assert_eq!(by_sub[0].order_id, "WO-1002");
    let json = serde_json::to_value(&by_sub[0]).unwrap();
    for field in [
        "order_id",
        "line_id",
        "subscription_id",
        "offer",
        "rsd",
        "provisioning_contact",
        "status",
        "provisioning_pending",
        "initial_email_sent_at",
        "closes_at",
        "billing_started",
        "org_id",
    ] {
        assert!(
            json.get(field).is_some(),
            "lines JSON lacks {field}: {json}"
        );
    }
}

#[test]
fn r7_closure_shows_closed_with_billing_started_before_ponr() {
    let mut ledger = Ledger::new();
    let models = ledger.models();
    place_wo1001_now(&mut ledger);
    let due = ledger.tick("WO-1001", "2026-12-09T00:00:00Z");
    assert!(
        due.iter().any(|e| e.event_type() == "LineClosed"),
        "{due:?}"
    );
    models.catch_up(&ledger.store).unwrap();
    let lines = models.lines(&LineQuery::default()).unwrap();
    assert_eq!(lines[0].status, "closed");
    assert_eq!(lines[0].status_label, "Closed");
    assert!(lines[0].billing_started);
    assert!(lines[0].provisioning_pending);
    assert_eq!(lines[1].status, "awaiting_provisioning_details");
    assert!(!lines[1].billing_started);
}

#[test]
fn r9_transaction_manager_lists_each_update_with_its_status() {
    let mut ledger = Ledger::new();
    life_of_wo1001(&mut ledger);
    let models = ledger.models();
    models.catch_up(&ledger.store).unwrap();

    let updates = models
        .transactions(&TransactionQuery {
            tx_type: Some(TransactionType::ProvisioningEmailUpdate),
            ..TransactionQuery::default()
        })
        .unwrap();
    let summary: Vec<_> = updates
        .iter()
        .map(|r| {
            (
                r.line_id.as_str(),
                r.status,
                r.old_email.as_deref(),
                r.new_email.as_deref(),
                r.applied_to_all_lines,
            )
        })
        .collect();
    use TransactionStatus::{Failed, Success};
    assert_eq!(
        summary,
        vec![
            // R4 apply to all: one row per line, one transaction.
            (
                "1.1",
                Success,
                Some("it@customer.example"),
                Some("new@customer.example"),
                true
            ),
            (
                "1.2",
                Success,
                Some("it@customer.example"),
                Some("new@customer.example"),
                true
            ),
            // R6: refused, the line's contact at that moment is the old email.
            (
                "1.2",
                Failed,
                Some("new@customer.example"),
                Some("eve@elsewhere.example"),
                false
            ),
            // R5 after PONR with apply to all: one failed row per line.
            (
                "1.1",
                Failed,
                Some("new@customer.example"),
                Some("late@customer.example"),
                true
            ),
            (
                "1.2",
                Failed,
                Some("new@customer.example"),
                Some("late@customer.example"),
                true
            ),
        ]
    );
    assert_eq!(updates[0].transaction_id, updates[1].transaction_id);
    assert_ne!(updates[1].transaction_id, updates[2].transaction_id);
    assert_eq!(updates[0].submitted_by, PAT);
    assert_eq!(updates[0].submitted_at, t("2026-11-21T09:00:00Z"));
    assert_eq!(updates[0].type_label, "Provisioning Email Update");
    assert_eq!(updates[0].reason, None);
    assert_eq!(updates[2].reason_code.as_deref(), Some("no_access"));
    assert!(updates[2].reason.as_deref().unwrap().contains(OLIVIA));
    assert_eq!(updates[3].reason_code.as_deref(), Some("after_ponr"));
    assert!(updates[3]
        .reason
        .as_deref()
        .unwrap()
        .contains("admin.webex.com"));
    assert_eq!(updates[3].submitted_by, PAT);

    // R9: search by subscription.
    let sub_42 = models
        .transactions(&TransactionQuery {
            tx_type: Some(TransactionType::ProvisioningEmailUpdate),
            subscription_id: Some(sub("Sub100042")),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(sub_42.len(), 2);
    assert!(sub_42.iter().all(|r| r.subscription_id == "Sub100042"));

    let resends = models
        .transactions(&TransactionQuery {
            tx_type: Some(TransactionType::ProvisioningEmailResend),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(resends.len(), 2);
    assert_eq!(resends[0].status, Failed);
    assert_eq!(
        resends[0].reason_code.as_deref(),
        Some("initial_email_not_sent")
    );
    assert_eq!(resends[1].status, Success);
    assert_eq!(
        resends[1].new_email.as_deref(),
        Some("new@customer.example")
    );
    assert_eq!(resends[1].line_id, "1.2");

    let onboarding = models
        .transactions(&TransactionQuery {
            tx_type: Some(TransactionType::OrgOnboarding),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(onboarding.len(), 2, "one row per line: {onboarding:?}");
    assert!(onboarding.iter().all(|r| r.status == Success));
    assert_eq!(onboarding[0].detail.as_deref(), Some("organisation org-77"));

    let cases = models
        .transactions(&TransactionQuery {
            tx_type: Some(TransactionType::SupportCase),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].order_id, "WO-1002");
    assert_eq!(cases[0].subscription_id, "Sub200001");

    // Scheduled events and placements are not transactions.
    let all = models.transactions(&TransactionQuery::default()).unwrap();
    assert_eq!(all.len(), 5 + 2 + 2 + 1);
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| {
        (a.submitted_at, a.position, &a.line_id).cmp(&(b.submitted_at, b.position, &b.line_id))
    });
    assert_eq!(all, sorted, "chronological order");

    // Filters combine; limit keeps the earliest rows.
    let failed = models
        .transactions(&TransactionQuery {
            status: Some(Failed),
            order_id: Some(order("WO-1001")),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 4);
    let window = models
        .transactions(&TransactionQuery {
            since: Some(t("2026-12-02T09:00:00Z")),
            until: Some(t("2026-12-10T09:00:00Z")),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(window.len(), 1 + 1 + 2, "{window:#?}");
    let first_two = models
        .transactions(&TransactionQuery {
            limit: Some(2),
            ..TransactionQuery::default()
        })
        .unwrap();
    assert_eq!(first_two, all[..2].to_vec());

    let json = serde_json::to_value(&all[0]).unwrap();
    for field in [
        "transaction_id",
        "type",
        "order_id",
        "line_id",
        "subscription_id",
        "submitted_by",
        "submitted_at",
        "status",
        "reason",
        "old_email",
        "new_email",
        "applied_to_all_lines",
    ] {
        assert!(
            json.get(field).is_some(),
            "transactions JSON lacks {field}: {json}"
        );
    }
    assert_eq!(json["type"], "provisioning_email_update");
    assert_eq!(json["status"], "success");
}

#[test]
fn history_by_subscription_has_its_line_and_its_orders_order_level_events() {
    let mut ledger = Ledger::new();
    life_of_wo1001(&mut ledger);
    let models = ledger.models();
    models.catch_up(&ledger.store).unwrap();

    let all = models
        .history(
            &ledger.store,
            &HistoryQuery {
                order_id: Some(order("WO-1001")),
                ..HistoryQuery::default()
            },
        )
        .unwrap();
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert!(all.iter().all(|r| r.order_id == "WO-1001"));
    assert_eq!(all[0].event_type, "OrderPlaced");
    assert_eq!(all[0].line_id, None);
    assert_eq!(all[0].actor, OLIVIA);
    assert_eq!(
        all.len() as u64,
        ledger.store.stream_version("order-WO-1001").unwrap()
    );
    let stored = ledger.store.read_stream("order-WO-1001", 0).unwrap();
    for (row, event) in all.iter().zip(&stored) {
        assert_eq!(row.position, event.position);
        assert_eq!(row.hash, event.hash);
        assert_eq!(row.prev_hash, event.prev_hash);
        assert_eq!(row.payload, event.payload);
        assert_eq!(row.recorded_at, event.recorded_at);
        assert_eq!(row.transaction_id, event.metadata.transaction_id);
    }

    let sub43 = models
        .history(
            &ledger.store,
            &HistoryQuery {
                subscription_id: Some(sub("Sub100043")),
                ..HistoryQuery::default()
            },
        )
        .unwrap();
    assert!(sub43.windows(2).all(|w| w[0].position < w[1].position));
    assert!(sub43
        .iter()
        .all(|r| r.line_id.is_none() || r.subscription_id.as_deref() == Some("Sub100043")));
    let types: Vec<_> = sub43.iter().map(|r| r.event_type.as_str()).collect();
    assert!(types.contains(&"OrderPlaced"), "{types:?}");
    assert!(types.contains(&"OrgOnboarded"), "{types:?}");
    assert!(types.contains(&"ProvisioningEmailResent"), "{types:?}");
    assert!(!sub43.iter().any(|r| r.line_id.as_deref() == Some("1.1")));
    // Its events are those of the order minus line 1.1's.
    let expected: Vec<_> = all
        .iter()
        .filter(|r| r.line_id.as_deref() != Some("1.1"))
        .cloned()
        .collect();
    assert_eq!(sub43, expected);

    let other = models
        .history(
            &ledger.store,
            &HistoryQuery {
                subscription_id: Some(sub("Sub200001")),
                ..HistoryQuery::default()
            },
        )
        .unwrap();
    assert!(other.iter().all(|r| r.order_id == "WO-1002"));
    assert_eq!(other.len(), 2);

    // Both filters: the intersection.
    let none = models
        .history(
            &ledger.store,
            &HistoryQuery {
                order_id: Some(order("WO-1002")),
                subscription_id: Some(sub("Sub100043")),
            },
        )
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn orders_due_follows_the_domains_next_due() {
    let mut ledger = Ledger::new();
    let models = ledger.models();
    place_wo1001_now(&mut ledger);
    ledger
        .exec(
            "WO-1002",
            OLIVIA,
            "2026-11-20T11:00:00Z",
            place(
                "WO-1002",
                &[("1", "Sub200001", "A-SPK", "2027-01-10", "ops@other.example")],
            ),
        )
        .unwrap();
    models.catch_up(&ledger.store).unwrap();
    assert!(models
        .orders_due(t("2026-11-30T23:59:59Z"))
        .unwrap()
        .is_empty());
    assert_eq!(
        models.orders_due(t("2026-12-01T00:00:00Z")).unwrap(),
        vec![order("WO-1001")]
    );
    assert_eq!(
        models.orders_due(t("2027-02-01T00:00:00Z")).unwrap(),
        vec![order("WO-1001"), order("WO-1002")]
    );
    // After the tick the next transition is the R11 escalation on 12-02.
    ledger.tick("WO-1001", "2026-12-01T12:00:00Z");
    models.catch_up(&ledger.store).unwrap();
    assert!(models
        .orders_due(t("2026-12-01T12:00:00Z"))
        .unwrap()
        .is_empty());
    assert_eq!(
        models.orders_due(t("2026-12-02T00:00:00Z")).unwrap(),
        vec![order("WO-1001")]
    );
    // Past PONR nothing is ever due.
    ledger
        .exec("WO-1001", OLIVIA, "2026-12-01T13:00:00Z", onboard("org-1"))
        .unwrap();
    models.catch_up(&ledger.store).unwrap();
    assert_eq!(
        models.orders_due(t("2030-01-01T00:00:00Z")).unwrap(),
        vec![order("WO-1002")]
    );
}
