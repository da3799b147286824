//! The markdown table the benchmark prints: one row per figure, with its
//! median, min, max, number of runs, and the goal it is held to.

use nixos_shell_test_support::bench::stats::{summarize, Summary};

/// How a figure's numbers read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// Seconds, shown as ms or s.
    Seconds,
    /// A dimensionless ratio.
    Ratio,
    /// A count of things.
    Count,
    /// Bytes, shown as MiB.
    Bytes,
    /// Bytes per second, shown as MiB/s.
    Rate,
}

/// What was found for a figure.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Summary),
    /// The figure could not be taken; the text says why.
    Failed(String),
    /// The figure was not asked for (e.g. no original script given).
    Skipped(String),
    /// A fact found once rather than a number, e.g. what nix reported.
    Fact(String),
}

/// A goal a figure is held to: its text, and whether the median meets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub text: String,
    pub met: bool,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub unit: Unit,
    pub outcome: Outcome,
    pub goal: Option<Goal>,
}

impl Row {
    pub fn new(figure: impl Into<String>, unit: Unit, outcome: Outcome) -> Row {
        Row {
            figure: figure.into(),
            unit,
            outcome,
            goal: None,
        }
    }

    /// A figure taken several times: the median, min and max of `values`,
    /// or a failure when there are none.
    pub fn measured(figure: impl Into<String>, unit: Unit, values: &[f64]) -> Row {
        let outcome = match summarize(values) {
            Some(s) => Outcome::Measured(s),
            None => Outcome::Failed("no runs".into()),
        };
        Row::new(figure, unit, outcome)
    }

    /// Holds the row to a goal, judged on the median by `met`.
    pub fn goal(mut self, text: &str, met: impl Fn(f64) -> bool) -> Row {
        let met = match &self.outcome {
            Outcome::Measured(s) => met(s.median),
            _ => false,
        };
        self.goal = Some(Goal {
            text: text.to_string(),
            met,
        });
        self
    }

    /// Holds the row to a goal judged elsewhere.
    pub fn goal_met(mut self, text: &str, met: bool) -> Row {
        self.goal = Some(Goal {
            text: text.to_string(),
            met,
        });
        self
    }
}

/// Formats one number in a unit.
pub fn format_value(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Seconds if value.abs() < 1.0 => format!("{:.1} ms", value * 1e3),
        Unit::Seconds => format!("{value:.2} s"),
        Unit::Ratio => format!("{value:.3}"),
        Unit::Count => format!("{value}"),
        Unit::Bytes => format!("{:.2} MiB", value / (1024.0 * 1024.0)),
        Unit::Rate => format!("{:.1} MiB/s", value / (1024.0 * 1024.0)),
    }
}

/// The whole table, header included, one `\n`-terminated line per row.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | median | min | max | runs | goal | met |\n\
         |---|---:|---:|---:|---:|---|---|\n",
    );
    for row in rows {
        let (median, min, max, runs) = match &row.outcome {
            Outcome::Measured(s) => (
                format_value(row.unit, s.median),
                format_value(row.unit, s.min),
                format_value(row.unit, s.max),
                s.runs.to_string(),
            ),
            Outcome::Failed(why) => (
                format!("failed: {}", cell(why)),
                "".into(),
                "".into(),
                "0".into(),
            ),
            Outcome::Skipped(why) => (
                format!("not run: {}", cell(why)),
                "".into(),
                "".into(),
                "0".into(),
            ),
            Outcome::Fact(what) => (cell(what), "".into(), "".into(), "1".into()),
        };
        let (goal, met) = match &row.goal {
            Some(g) => (g.text.as_str(), if g.met { "met" } else { "**not met**" }),
            None => ("", ""),
        };
        out.push_str(&format!(
            "| {} | {median} | {min} | {max} | {runs} | {goal} | {met} |\n",
            row.figure
        ));
    }
    out
}

/// The longest text a cell shows; the whole text goes to stderr.
const MAX_CELL: usize = 400;

/// Text made safe for one table cell: one line, no column separators, at
/// most [`MAX_CELL`] characters.
fn cell(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    let short: String = line.chars().take(MAX_CELL).collect();
    let short = if short.len() < line.len() {
        short + " …"
    } else {
        short
    };
    short.replace('|', "\\|")
}
