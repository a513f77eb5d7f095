//! The workload generator: a realistic, seeded stream of orders and the
//! actions partners take on them.
//!
//! This module exists so that every benchmark (and `provledger-bench
//! generate`) runs the same kind of traffic, reproducibly: orders of 1–5
//! lines over every offer, contact changes with and without *apply to all
//! lines*, resends (some before the RSD, some after the Point of No Return,
//! so refused), actors without access (refused, R6), onboardings, setup
//! starts, support cases, and a scheduler tick every few hours of business
//! time. The workload is a pure function of its [`WorkloadSpec`].
//!
//! Steps are kept compact ([`PlannedStep`], a few bytes each) and only turned
//! into script [`Step`]s on demand, so a workload of millions of events fits
//! in a few tens of megabytes.

use std::io::Write;

use chrono::{DateTime, Duration, TimeZone, Utc};
use provledger::script::Step;
use provledger_domain::{LineRequest, OrderRequest};

use crate::rng::Rng;

/// Offers the generator draws from: the four named ones and two others.
pub const OFFERS: &[&str] = &["A-Flex", "A-Flex-3", "A-WX", "A-SPK", "A-MSG", "A-MEET"];

/// An actor who has no access to any order (R6 refusals).
pub const STRANGER: &str = "mallory.outsider@elsewhere.example";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// Number of orders.
    pub orders: u32,
    /// Seed: the same spec always gives the same workload.
    pub seed: u64,
    /// Business time of the first order.
    pub start: DateTime<Utc>,
    /// Orders placed per hour of business time.
    pub orders_per_hour: u32,
    /// Hours of business time between scheduler ticks.
    pub tick_every_hours: u32,
}

impl WorkloadSpec {
    /// `orders` orders from `seed`, with the default pace: 20 orders an
    /// hour from 2026-01-05, a tick every 6 hours.
    pub fn new(orders: u32, seed: u64) -> WorkloadSpec {
        WorkloadSpec {
            orders,
            seed,
            start: Utc
                .with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
                .single()
                .unwrap_or_default(),
            orders_per_hour: 20,
            tick_every_hours: 6,
        }
    }
}

/// Who acts in a step, relative to the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The ordering contact.
    Orderer,
    /// The order's partner contact.
    Partner,
    /// The order's distributor contact (the orderer when there is none).
    Distributor,
    /// Someone without access ([`STRANGER`]).
    Stranger,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// R1: place the order.
    Place,
    /// R4: change a line's contact to contact number `contact` of the order's
    /// customer, optionally on every line.
    Change {
        /// Line index (0-based).
        line: u8,
        /// Which of the customer's contacts.
        contact: u8,
        /// *Apply to all lines*.
        all: bool,
    },
    /// R3: resend a line's provisioning email.
    Resend {
        /// Line index (0-based).
        line: u8,
    },
    /// R5: onboard the order (PONR).
    Onboard,
    /// R13: start the setup wizard.
    Setup,
    /// R10: open a support case.
    Case {
        /// Line index (0-based).
        line: u8,
        /// Resend (true) or change-contact (false) request type.
        resend: bool,
    },
    /// Run the scheduler.
    Tick,
}

/// One step, compactly: when, which order, who, what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedStep {
    /// Business time, seconds since the Unix epoch.
    pub at: i64,
    /// Order number (ignored for ticks).
    pub order: u32,
    /// Who acts.
    pub who: Who,
    /// What happens.
    pub action: Action,
}

impl PlannedStep {
    /// True for a scheduler tick.
    pub fn is_tick(&self) -> bool {
        self.action == Action::Tick
    }
}

/// The fixed facts of one order, derived from the seed and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    /// Number of lines (1–5).
    pub lines: u8,
    /// The requested start date, in days after placement (1–14).
    pub rsd_days: u8,
    /// Whether the order lists a distributor contact.
    pub has_distributor: bool,
    /// When it is placed (seconds since the epoch).
    pub placed_at: i64,
}

/// A generated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    spec: WorkloadSpec,
    steps: Vec<PlannedStep>,
}

fn at_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

impl Workload {
    /// Generate the workload of `spec`: every order's steps, then ticks, in
    /// business-time order.
    pub fn generate(spec: WorkloadSpec) -> Workload {
        let mut steps = Vec::new();
        let mut last = at_secs(spec.start);
        for order in 0..spec.orders {
            let plan = plan_order(&spec, order);
            let mut rng = Rng::for_item(spec.seed ^ 0x5eed, u64::from(order));
            let placed = plan.placed_at;
            let rsd = placed - placed.rem_euclid(DAY) + i64::from(plan.rsd_days) * DAY;
            let lines = u64::from(plan.lines);
            let mut push = |at: i64, who: Who, action: Action| {
                steps.push(PlannedStep {
                    at,
                    order,
                    who,
                    action,
                });
                last = last.max(at);
            };
            push(placed, Who::Orderer, Action::Place);
            let who = |rng: &mut Rng| match rng.range(0, 99) {
                0..=74 => Who::Orderer,
                75..=86 => Who::Partner,
                87..=91 => Who::Distributor,
                _ => Who::Stranger,
            };
            // Two contact changes and two resends on average.
            for _ in 0..rng.range(0, 4) {
                let at =
                    placed + rng.range(10 * MINUTE as u64, (rsd - placed + 10 * DAY) as u64) as i64;
                let action = Action::Change {
                    line: rng.range(0, lines - 1) as u8,
                    contact: rng.range(0, 4) as u8,
                    all: plan.lines > 1 && rng.chance(30),
                };
                let w = who(&mut rng);
                push(at, w, action);
            }
            for _ in 0..rng.range(0, 4) {
                let at =
                    placed + rng.range(10 * MINUTE as u64, (rsd - placed + 12 * DAY) as u64) as i64;
                let action = Action::Resend {
                    line: rng.range(0, lines - 1) as u8,
                };
                let w = who(&mut rng);
                push(at, w, action);
            }
            if rng.chance(30) {
                let at = (rsd + rng.range(0, 3 * DAY as u64) as i64 - DAY).max(placed + MINUTE);
                let w = who(&mut rng);
                push(at, w, Action::Setup);
            }
            if rng.chance(35) {
                let at = rsd + rng.range(HOUR as u64, 10 * DAY as u64) as i64;
                let w = who(&mut rng);
                push(at, w, Action::Onboard);
            }
            if rng.chance(5) {
                let at = placed + rng.range(HOUR as u64, (rsd - placed + 8 * DAY) as u64) as i64;
                let action = Action::Case {
                    line: rng.range(0, lines - 1) as u8,
                    resend: rng.chance(50),
                };
                let w = who(&mut rng);
                push(at, w, action);
            }
        }
        // Ticks from the start until every window has run out.
        let every = i64::from(spec.tick_every_hours.max(1)) * HOUR;
        let first = at_secs(spec.start) + every;
        let end = last + 32 * DAY;
        let mut t = first;
        while t <= end {
            steps.push(PlannedStep {
                at: t,
                order: u32::MAX,
                who: Who::Orderer,
                action: Action::Tick,
            });
            t += every;
        }
        // Business-time order; at the same second, an order's placement
        // first, a tick last.
        steps.sort_by_key(|s| {
            let rank = match s.action {
                Action::Place => 0,
                Action::Tick => 2,
                _ => 1,
            };
            (s.at, rank, s.order)
        });
        Workload { spec, steps }
    }

    /// The spec this workload was generated from.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// The compact steps, in business-time order.
    pub fn steps(&self) -> &[PlannedStep] {
        &self.steps
    }

    /// Number of steps (ticks included).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The order id of order number `order`.
    pub fn order_id(order: u32) -> String {
        format!("WO-{:07}", order + 1)
    }

    /// The order file of order number `order`.
    pub fn order_request(&self, order: u32) -> OrderRequest {
        order_request(&self.spec, order)
    }

    /// Step `index` as a script step.
    pub fn step(&self, index: usize) -> Option<Step> {
        self.steps.get(index).map(|s| self.materialise(s))
    }

    /// A compact step as a script step.
    pub fn materialise(&self, s: &PlannedStep) -> Step {
        let at = time(s.at);
        if s.action == Action::Tick {
            return Step::Tick { now: at };
        }
        let plan = plan_order(&self.spec, s.order);
        let p = partner_number(s.order);
        let actor = match s.who {
            Who::Orderer => orderer(p),
            Who::Partner => partner_contact(p),
            Who::Distributor if plan.has_distributor => distributor_contact(p),
            Who::Distributor => orderer(p),
            Who::Stranger => STRANGER.to_string(),
        };
        let order = Self::order_id(s.order);
        match s.action {
            Action::Place => Step::PlaceOrder {
                actor: orderer(p),
                at,
                order: self.order_request(s.order),
            },
            Action::Change { line, contact, all } => Step::ChangeContact {
                actor,
                at,
                order,
                line: line_id(line),
                email: customer_contact(s.order, contact),
                all_lines: all,
            },
            Action::Resend { line } => Step::ResendEmail {
                actor,
                at,
                order,
                line: line_id(line),
            },
            Action::Onboard => Step::OnboardOrg {
                actor,
                at,
                order,
                org: format!("ORG-{:07}", s.order + 1),
            },
            Action::Setup => Step::StartSetup { actor, at, order },
            Action::Case { line, resend } => Step::OpenCase {
                actor,
                at,
                order,
                line: line_id(line),
                request_type: if resend {
                    "resend-provisioning-email"
                } else {
                    "change-provisioning-contact-email"
                }
                .to_string(),
                note: Some("the customer cannot find the provisioning email".to_string()),
            },
            Action::Tick => Step::Tick { now: at },
        }
    }

    /// Write the workload as a scenario script (JSON Lines of steps, the
    /// format of `provledger run`). Returns the number of steps written.
    pub fn write_script(&self, out: &mut dyn Write) -> std::io::Result<u64> {
        let mut n = 0;
        for s in &self.steps {
            let line =
                serde_json::to_string(&self.materialise(s)).map_err(std::io::Error::other)?;
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            n += 1;
        }
        Ok(n)
    }
}

fn partner_number(order: u32) -> u32 {
    order % 250
}

fn orderer(p: u32) -> String {
    format!("olivia.buyer@partner-{p:04}.example")
}

fn partner_contact(p: u32) -> String {
    format!("pat.sales@partner-{p:04}.example")
}

fn distributor_contact(p: u32) -> String {
    format!("dana.operations@distributor-{:02}.example", p % 17)
}

fn customer_contact(order: u32, n: u8) -> String {
    const NAMES: &[&str] = &[
        "it.admin",
        "webex.team",
        "collab.ops",
        "shared.mailbox",
        "it.helpdesk",
    ];
    format!(
        "{}@customer-{:07}.example",
        NAMES[usize::from(n) % NAMES.len()],
        order + 1
    )
}

fn line_id(line: u8) -> String {
    format!("1.{}", u32::from(line) + 1)
}

/// The fixed facts of order number `order`.
pub fn plan_order(spec: &WorkloadSpec, order: u32) -> OrderPlan {
    let mut rng = Rng::for_item(spec.seed, u64::from(order));
    let per_hour = i64::from(spec.orders_per_hour.max(1));
    let gap = HOUR / per_hour;
    let placed_at = at_secs(spec.start)
        + i64::from(order) * HOUR / per_hour
        + rng.range(0, (gap - 1).max(0) as u64) as i64;
    OrderPlan {
        lines: rng.range(1, 5) as u8,
        rsd_days: rng.range(1, 14) as u8,
        has_distributor: rng.chance(50),
        placed_at,
    }
}

fn order_request(spec: &WorkloadSpec, order: u32) -> OrderRequest {
    let plan = plan_order(spec, order);
    let mut rng = Rng::for_item(spec.seed ^ 0x0ffe, u64::from(order));
    let p = partner_number(order);
    let placed = time(plan.placed_at);
    let rsd = (placed + Duration::days(i64::from(plan.rsd_days))).date_naive();
    OrderRequest {
        order_id: Workload::order_id(order),
        ordering_contact: orderer(p),
        partner: format!("Partner {p:04} Collaboration Services GmbH"),
        end_customer: format!("Customer {:07} Ltd", order + 1),
        partner_contacts: vec![partner_contact(p)],
        distributor_contacts: if plan.has_distributor {
            vec![distributor_contact(p)]
        } else {
            Vec::new()
        },
        lines: (0..plan.lines)
            .map(|l| LineRequest {
                line_id: line_id(l),
                subscription_id: format!("Sub{:07}{:02}", order + 1, l + 1),
                offer: OFFERS[rng.index(OFFERS.len())].to_string(),
                rsd: rsd.to_string(),
                provisioning_contact: customer_contact(order, rng.range(0, 4) as u8),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_time_order() {
        let a = Workload::generate(WorkloadSpec::new(50, 7));
        let b = Workload::generate(WorkloadSpec::new(50, 7));
        assert_eq!(a.steps(), b.steps());
        assert!(a.steps().windows(2).all(|w| w[0].at <= w[1].at));
        let c = Workload::generate(WorkloadSpec::new(50, 8));
        assert_ne!(a.steps(), c.steps());
        // Every order is placed before anything else happens to it.
        let mut placed = std::collections::HashSet::new();
        for s in a.steps() {
            match s.action {
                Action::Place => assert!(placed.insert(s.order)),
                Action::Tick => {}
                _ => assert!(placed.contains(&s.order), "{s:?} before placement"),
            }
        }
        assert_eq!(placed.len(), 50);
        // Every step validates.
        for i in 0..a.len() {
            let step = a.step(i).unwrap();
            step.prepare().unwrap();
        }
    }
}
