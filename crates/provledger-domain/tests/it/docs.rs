//! scratch
use crate::harness::*;
use provledger_domain::*;

#[test]
fn print_examples() {
    let t = at(2026, 12, 3, 9, 30);
    let mut stream = sample_until(t);
    let out = |e: &Event| println!("=== {}\n{}", e.event_type(), serde_json::to_string_pretty(&e.to_payload()).unwrap());
    let mut evs = stream.clone();
    evs.dedup_by(|a, b| a.event_type() == b.event_type());
    for e in &evs { out(e); }
    let st = OrderState::from_events(&stream);
    for (cmd, actor) in [
        (resend("1.2"), PAT),
        (change("1.2", NEW, false), OLIVIA),
        (Command::OpenSupportCase { line_id: line("1.2"), request_type: SupportRequestType::ResendProvisioningEmail, note: Some("The alias rejects external mail; screenshot of the bounce attached.".into()), attachments: vec![Attachment { file_name: "bounce.png".into(), size_bytes: 48213, sha256: "5f2b8c1e0d9a7b3c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d".into() }] }, OLIVIA),
        (change("1.1", NEW, true), AUDREY),
        (Command::StartSetup, IT),
    ] {
        let ctx = Context::new(Actor::parse(actor).unwrap(), t);
        for e in decide(&st, cmd, &ctx).unwrap() { out(&e); }
    }
    stream.push(onboarded("org-3f9c2a", at(2026, 12, 4, 15, 0)));
    let st = OrderState::from_events(&stream);
    out(stream.last().unwrap());
    let ctx = Context::new(Actor::parse(OLIVIA).unwrap(), at(2026, 12, 4, 16, 0));
    for e in decide(&st, resend("1.1"), &ctx).unwrap() { out(&e); }
    let st2 = OrderState::from_events(&sample_until(at(2026,12,8,0,0)));
    for e in due_events(&st2, at(2026,12,8,0,0)).iter().chain(sample_until(at(2026,12,8,0,0)).iter()).filter(|e| e.event_type()=="LineClosed") { out(e); }
    let st0 = OrderState::from_events(&[placed()]);
    for e in decide(&st0, resend("1.1"), &Context::new(Actor::parse(OLIVIA).unwrap(), at(2026,11,25,10,0))).unwrap() { out(&e); }
}
