//! What the demo draws: the Events as a table within 100 columns, the README's pipeline with a
//! run's counts, and colour on a terminal only.

use std::io::IsTerminal as _;

use super::demo_check::Expectation;
use super::replay::ReplayReport;

/// The widest line the demo prints itself (the handler's own unexpected lines are not cut).
pub(super) const WIDTH: usize = 100;

/// `text` cut to `width` characters, with `…` where it was cut.
pub(super) fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The table's columns and widths: 2 + 97 characters.
pub(super) const HEADER: [&str; 6] = [
    "STAGE",
    "VERB",
    "RESOURCE",
    "NAMESPACE/NAME",
    "USER",
    "CODE",
];
const WIDTHS: [usize; 6] = [16, 8, 14, 26, 23, 4];

pub(super) fn row(cells: &[String; 6]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(WIDTHS)
        .map(|(cell, width)| format!("{:<width$}", fit(cell, width)))
        .collect();
    padded.join(" ").trim_end().to_string()
}

/// The pipeline of the README, with this run's counts.
pub(super) fn print_picture(
    expected: &Expectation,
    report: &ReplayReport,
    delivered: u64,
    style: Style,
) {
    let head = format!(
        "  input ── {} event(s), {} record(s) ──▶ handler ── {delivered} Event(s) ──▶ receiver",
        expected.bodies, expected.records
    );
    let column = head
        .find("handler")
        .map_or(0, |at| head[..at].chars().count());
    let at = |mark: &str, text: String| format!("{}{mark} {text}", " ".repeat(column));
    let mut lines = vec![
        head.clone(),
        at(
            "├",
            format!(
                "{} record(s) of other categories, skipped",
                expected.other_categories
            ),
        ),
    ];
    if expected.copies > 0 {
        lines.push(at(
            "├",
            format!(
                "{} Event(s) streamed in both categories, sent once",
                expected.copies
            ),
        ));
    }
    lines.push(at(
        "└",
        format!(
            "{} dead letter(s): {} malformed record(s), {} not JSON",
            report.dead_letters, expected.malformed_records, expected.malformed_bodies
        ),
    ));
    for line in lines {
        outln!("{}", style.bold(&fit(&line, WIDTH)));
    }
}

/// ANSI colours on a terminal (and without `NO_COLOR`), plain text otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    pub(super) colour: bool,
}

impl Style {
    pub(super) fn detect() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub(super) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(super) fn green(self, text: &str) -> String {
        self.paint("1;32", text)
    }

    pub(super) fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    pub(super) fn red(self, text: &str) -> String {
        self.paint("1;31", text)
    }
}
