//! scratch
use chrono::{TimeZone, Utc};
use provledger_domain::*;

#[test]
fn scratch() {
    let spec = LineSpec { line_id: LineId::parse("1").unwrap(), subscription_id: SubscriptionId::parse("S1").unwrap(), offer: Offer::AWx, rsd: chrono::NaiveDate::from_ymd_opt(2026,12,1).unwrap(), provisioning_contact: Email::parse("c@c.example").unwrap() };
    let v = ValidOrder { order_id: OrderId::parse("WO-1").unwrap(), ordering_contact: Email::parse("o@p.example").unwrap(), partner: String::new(), end_customer: String::new(), partner_contacts: vec![], distributor_contacts: vec![], lines: vec![spec.clone(), spec] };
    let ctx = Context::new(Actor::parse("o@p.example").unwrap(), Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let evs = decide(&OrderState::default(), Command::PlaceOrder(v), &ctx).unwrap();
    let st = OrderState::from_events(&evs);
    let mut n = 0;
    // bounded look at what due_events would do
    let mut s = st.clone();
    for _ in 0..5 { let d = due_events(&s, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()); n += d.len(); if d.is_empty() {break;} s = evolve(s, &d[0]); println!("{:?}", d[0]); }
    println!("{n}");
}
