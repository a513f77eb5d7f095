//! Prometheus metrics of one server process: requests by route and status,
//! a latency histogram, events appended; the projection lag is read from the
//! ledger when scraped.
//!
//! This module exists so that operators can watch a server without a
//! metrics library: a few counters behind a mutex, rendered as the
//! Prometheus text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    events_appended: u64,
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut inner = self.inner();
        *inner
            .requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                inner.buckets[i] += 1;
            }
        }
        inner.count += 1;
        inner.sum += seconds;
    }

    /// Count events appended by a write.
    pub fn appended(&self, events: u64) {
        self.inner().events_appended += events;
    }

    /// The Prometheus text; `lag` is the read models' distance behind the
    /// store's head (`None` when it could not be read).
    pub fn render(&self, lag: Option<u64>) -> String {
        let inner = self.inner();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP provledger_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE provledger_http_requests_total counter");
        for ((method, route, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "provledger_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        let _ = writeln!(
            out,
            "# HELP provledger_http_request_duration_seconds Request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE provledger_http_request_duration_seconds histogram"
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "provledger_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                inner.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "provledger_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            inner.count
        );
        let _ = writeln!(
            out,
            "provledger_http_request_duration_seconds_sum {}",
            inner.sum
        );
        let _ = writeln!(
            out,
            "provledger_http_request_duration_seconds_count {}",
            inner.count
        );
        let _ = writeln!(
            out,
            "# HELP provledger_events_appended_total Events appended by this server's writes."
        );
        let _ = writeln!(out, "# TYPE provledger_events_appended_total counter");
        let _ = writeln!(
            out,
            "provledger_events_appended_total {}",
            inner.events_appended
        );
        if let Some(lag) = lag {
            let _ = writeln!(out, "# HELP provledger_projection_lag_events Events the read models are behind the store.");
            let _ = writeln!(out, "# TYPE provledger_projection_lag_events gauge");
            let _ = writeln!(out, "provledger_projection_lag_events {lag}");
        }
        out
    }
}
