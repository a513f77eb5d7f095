//! The results of a run: every figure with its raw baseline, ratio and
//! target, printed as a table (and optionally written as JSON).
//!
//! This module exists so that the numbers in docs/performance.md are copied
//! from one place and always carry their context: the backend, the ledger
//! size, the baseline measured in the same run, and whether the target is met.

use std::fmt::Write as _;

use serde::Serialize;

/// Whether more or less of a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput: more is better.
    Higher,
    /// Latency, memory, growth: less is better.
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// `P1` … `P6`, or `GC` for group commit.
    pub id: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Events in the ledger when measured.
    pub ledger_events: u64,
    /// What was measured.
    pub what: String,
    /// provledger's value.
    pub ours: f64,
    /// The raw baseline's value in the same run, if there is one.
    pub raw: Option<f64>,
    /// Unit of both values.
    pub unit: String,
    /// Direction.
    pub better: Better,
    /// The target, in words (e.g. `≥ 0.8× raw`).
    pub target: String,
    /// Whether the target is met (`None`: no target for this row).
    pub met: Option<bool>,
}

impl Figure {
    /// ours / raw (for throughput: the fraction of the ceiling reached; for
    /// latency: how many times the raw latency).
    pub fn ratio(&self) -> Option<f64> {
        self.raw.filter(|r| *r > 0.0).map(|r| self.ours / r)
    }
}

/// Facts about the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunInfo {
    /// UTC date and time the run started.
    pub started: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// SQLite library version.
    pub sqlite_version: String,
    /// PostgreSQL server version and durability settings, if used.
    pub postgres: Option<String>,
    /// Workload seed.
    pub seed: u64,
    /// The command line.
    pub command: String,
    /// Seconds the whole run took.
    pub seconds: f64,
    /// Free-form notes (ledger sizes, workload mix).
    pub notes: Vec<String>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Facts about the run.
    pub info: RunInfo,
    /// Every figure.
    pub figures: Vec<Figure>,
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{:.0}", v)
    } else if v >= 10.0 {
        format!("{:.1}", v)
    } else if v >= 1.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

fn group(v: f64) -> String {
    let text = fmt_value(v);
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), format!(".{f}")),
        None => (text.clone(), String::new()),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out + &frac
}

fn size(events: u64) -> String {
    if events >= 1_000_000 {
        format!("{:.2}M", events as f64 / 1e6)
    } else if events >= 1_000 {
        format!("{}k", events / 1000)
    } else {
        events.to_string()
    }
}

impl Report {
    /// The results as a Markdown table (what docs/performance.md shows).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| id | backend | ledger | what | provledger | raw baseline | ratio | target | met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---|---|");
        for f in &self.figures {
            let raw = f
                .raw
                .map(|r| format!("{} {}", group(r), f.unit))
                .unwrap_or_else(|| "–".into());
            let ratio = f
                .ratio()
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into());
            let met = match f.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} {} | {} | {} | {} | {} |",
                f.id,
                f.backend,
                size(f.ledger_events),
                f.what,
                group(f.ours),
                f.unit,
                raw,
                ratio,
                f.target,
                met
            );
        }
        out
    }

    /// The run facts as Markdown bullet points.
    pub fn header(&self) -> String {
        let i = &self.info;
        let mut out = String::new();
        let _ = writeln!(out, "- started: {}", i.started);
        let _ = writeln!(
            out,
            "- machine: {} logical CPUs, {} MiB memory",
            i.cpus, i.memory_mib
        );
        let _ = writeln!(out, "- SQLite {}", i.sqlite_version);
        if let Some(pg) = &i.postgres {
            let _ = writeln!(out, "- PostgreSQL: {pg}");
        }
        let _ = writeln!(out, "- seed {}; command: `{}`", i.seed, i.command);
        let _ = writeln!(out, "- run took {:.0} s", i.seconds);
        for note in &i.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(1_234_567.0), "1,234,567");
        assert_eq!(group(12.345), "12.3");
        assert_eq!(group(0.5), "0.500");
        assert_eq!(size(1_000_000), "1.00M");
        assert_eq!(size(100_000), "100k");
    }
}
