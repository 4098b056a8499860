//! What one comparison run measured, and its two outputs: the table of ratios and the
//! SVG plot of the K-scaling curves. Pure functions of the figures, tested on fixed
//! inputs.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use loopwatch_benches::{Watcher, quantile};

/// A CPython release, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Version {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) patch: u32,
}

impl Version {
    /// `3.12.1` (digits only: pyenv's names for other builds, such as `3.13.0t` or
    /// `pypy3.10-7.3.17`, are not CPython release names and give `None`).
    pub(crate) fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.');
        let mut next = || -> Option<u32> {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let version = Version {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        match parts.next() {
            None => Some(version),
            Some(_) => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One implementation (and watcher) measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Row {
    /// `std::process::Command` spawn+wait: the baseline of every ratio.
    Std,
    /// `tokio::process` on a current-thread runtime.
    Tokio,
    /// loopwatch's loop with a watcher.
    Loopwatch(Watcher),
    /// CPython's asyncio with a watcher.
    CPython(Version, Watcher),
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Std => f.write_str("std"),
            Row::Tokio => f.write_str("tokio"),
            Row::Loopwatch(watcher) => write!(f, "loopwatch {watcher}"),
            Row::CPython(version, watcher) => write!(f, "CPython {version} {watcher}"),
        }
    }
}

/// From how many rounds the table gives a ratio's 95 % interval.
pub(crate) const INTERVAL_ROUNDS: usize = 10;

/// The per-reap medians of each row, per K and per round (nanoseconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Figures {
    medians: BTreeMap<(Row, u64), BTreeMap<usize, u64>>,
    failed: BTreeMap<Row, Vec<String>>,
}

impl Figures {
    /// Records `row`'s median per-reap time at `k` in `round`.
    pub(crate) fn record(&mut self, row: Row, k: u64, round: usize, median_ns: u64) {
        self.medians
            .entry((row, k))
            .or_default()
            .insert(round, median_ns);
    }

    /// Records that one of `row`'s runs failed: that round has no figure for it.
    pub(crate) fn fail(&mut self, row: Row, reason: String) {
        self.failed.entry(row).or_default().push(reason);
    }

    /// The rows that failed at least once, with why, run by run.
    pub(crate) fn failures(&self) -> &BTreeMap<Row, Vec<String>> {
        &self.failed
    }

    /// How many rounds have a figure for `row` at `k`.
    pub(crate) fn rounds(&self, row: Row, k: u64) -> usize {
        self.medians.get(&(row, k)).map_or(0, BTreeMap::len)
    }

    /// Every figure: (row, K, round, median per-reap time in ns).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Row, u64, usize, u64)> + '_ {
        self.medians.iter().flat_map(|(&(row, k), rounds)| {
            rounds
                .iter()
                .map(move |(&round, &median_ns)| (row, k, round, median_ns))
        })
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self.medians.keys().map(|&(row, _)| row).collect();
        rows.extend(self.failed.keys().copied());
        rows.sort();
        rows.dedup();
        rows
    }

    fn ks(&self) -> Vec<u64> {
        let mut ks: Vec<u64> = self.medians.keys().map(|&(_, k)| k).collect();
        ks.sort();
        ks.dedup();
        ks
    }

    /// The median over rounds of `row`'s per-reap median at `k`.
    pub(crate) fn median_ns(&self, row: Row, k: u64) -> Option<u64> {
        let mut values: Vec<u64> = self.medians.get(&(row, k))?.values().copied().collect();
        values.sort_unstable();
        quantile(&values, 0.5)
    }

    /// The median over rounds of `row`'s time at `k` divided by std's in the same
    /// round (rounds without both are left out).
    pub(crate) fn ratio(&self, row: Row, k: u64) -> Option<f64> {
        quantile(&self.ratios(row, k)?, 0.5)
    }

    /// `row`'s ratios to std at `k`, one per round with both, sorted.
    fn ratios(&self, row: Row, k: u64) -> Option<Vec<f64>> {
        let base = self.medians.get(&(Row::Std, k))?;
        let mut ratios: Vec<f64> = self
            .medians
            .get(&(row, k))?
            .iter()
            .filter_map(|(round, &ns)| {
                let &std = base.get(round)?;
                (std > 0).then(|| ns as f64 / std as f64)
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        Some(ratios)
    }

    /// A 95 % confidence interval of the median ratio ([`Figures::ratio`]) from
    /// [`INTERVAL_ROUNDS`] rounds on: the order statistics of ranks n/2 ∓ 0.98·√n,
    /// which hold whatever the distribution of the rounds' ratios.
    pub(crate) fn ratio_interval(&self, row: Row, k: u64) -> Option<(f64, f64)> {
        let ratios = self.ratios(row, k)?;
        let n = ratios.len();
        if n < INTERVAL_ROUNDS {
            return None;
        }
        let half = n as f64 / 2.0;
        let spread = 0.98 * (n as f64).sqrt();
        // Ranks from 1, clamped to the sample.
        let low = ((half - spread).floor() as usize).clamp(1, n);
        let high = ((half + spread).ceil() as usize).clamp(1, n);
        Some((ratios[low - 1], ratios[high - 1]))
    }

    /// The table of ratios to std, one row per implementation and watcher, one column
    /// per K, as Markdown, for reaps of `batch` children started at once. A figure
    /// from fewer rounds than std's says how many.
    pub(crate) fn table(&self, batch: usize) -> String {
        let ks = self.ks();
        let mut out = String::from("| per reap, ratio to std spawn+wait |");
        for &k in &ks {
            if k == 0 && batch > 1 {
                let _ = write!(out, " {batch} at once (K = 0) |");
            } else if k == 0 {
                out.push_str(" sequential (K = 0) |");
            } else if batch > 1 {
                let _ = write!(out, " K = {}, {batch} at once |", thousands(k));
            } else {
                let _ = write!(out, " K = {} |", thousands(k));
            }
        }
        out.push_str("\n|---|");
        for _ in &ks {
            out.push_str("---|");
        }
        out.push('\n');
        for row in self.rows() {
            let _ = write!(out, "| {row} |");
            for &k in &ks {
                let cell = if row == Row::Std {
                    self.median_ns(row, k)
                        .map(|ns| format!("1 ({})", duration(ns)))
                } else {
                    self.ratio(row, k)
                        .map(|ratio| match self.ratio_interval(row, k) {
                            Some((low, high)) => format!("{ratio:.3} ({low:.3}–{high:.3})"),
                            None => format!("{ratio:.2}"),
                        })
                };
                // A row that failed in some rounds keeps the figures of the others.
                let (done, all) = (self.rounds(row, k), self.rounds(Row::Std, k));
                let cell = match cell {
                    Some(cell) if done < all => format!("{cell} ({done}/{all} rounds)"),
                    Some(cell) => cell,
                    None if self.failed.contains_key(&row) => "failed".to_string(),
                    None => "—".to_string(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out
    }

    /// The curves of the plot: per-reap median against K for each row measured at
    /// more than one K (tokio is measured at K = 0 only).
    pub(crate) fn curves(&self) -> Vec<Curve> {
        self.rows()
            .into_iter()
            .filter_map(|row| {
                let points: Vec<(u64, f64)> = self
                    .ks()
                    .into_iter()
                    .filter_map(|k| Some((k, self.median_ns(row, k)? as f64 / 1e6)))
                    .collect();
                (points.len() > 1).then_some(Curve { row, points })
            })
            .collect()
    }
}

/// One line of the plot: (K, milliseconds per reap).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Curve {
    pub(crate) row: Row,
    pub(crate) points: Vec<(u64, f64)>,
}

/// `1,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `955 µs`, `1.35 ms`.
fn duration(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{} µs", (ns + 500) / 1000)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

fn color(watcher: Watcher) -> &'static str {
    match watcher {
        Watcher::Safe => "#d62728",
        Watcher::Fast => "#ff7f0e",
        Watcher::MultiLoop => "#9467bd",
        Watcher::Threaded => "#2ca02c",
        Watcher::Pidfd => "#1f77b4",
        Watcher::Auto => "#17becf",
        Watcher::Waitid => "#8c564b",
    }
}

/// Stroke colour, width and dash pattern: a colour per watcher, loopwatch in thick
/// solid lines, each CPython version in its own thin dash pattern, std in black.
fn style(row: Row) -> (&'static str, f64, Option<&'static str>) {
    const DASHES: [&str; 7] = ["6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 2", "3 2 1 2"];
    match row {
        Row::Std => ("#000000", 2.0, None),
        Row::Tokio => ("#7f7f7f", 2.0, Some("1 2")),
        Row::Loopwatch(watcher) => (color(watcher), 3.0, None),
        Row::CPython(version, watcher) => (
            color(watcher),
            1.3,
            Some(DASHES[version.minor as usize % DASHES.len()]),
        ),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for an axis from 0 to `max` with about five ticks.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&m| m * magnitude >= raw)
        .unwrap_or(10.0);
    unit * magnitude
}

fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// The plot as an SVG document: per-reap time (ms) against K, both axes linear from
/// 0, so that a cost in O(K) is a straight rising line; a legend on the right.
pub(crate) fn svg(curves: &[Curve], title: &str) -> String {
    const LEFT: f64 = 70.0;
    const TOP: f64 = 40.0;
    const PLOT_W: f64 = 560.0;
    const LEGEND_W: f64 = 250.0;
    const LINE_H: f64 = 15.0;
    let plot_h = f64::max(420.0, curves.len() as f64 * LINE_H);
    let width = LEFT + PLOT_W + 30.0 + LEGEND_W;
    let height = TOP + plot_h + 60.0;

    let max_k = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(k, _)| k))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_ms = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(_, ms)| ms))
        .filter(|ms| ms.is_finite())
        .fold(0.0, f64::max);
    let y_step = tick_step(if max_ms > 0.0 { max_ms } else { 1.0 });
    let y_max = (max_ms / y_step).ceil().max(1.0) * y_step;
    let x = |k: f64| LEFT + k / max_k * PLOT_W;
    let y = |ms: f64| TOP + plot_h - ms / y_max * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        escape(title)
    );
    // Axes, grid and ticks.
    let mut tick = 0.0;
    while tick <= y_max + y_step / 2.0 {
        let ty = y(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            ty + 4.0,
            number(tick)
        );
        tick += y_step;
    }
    let mut ks: Vec<u64> = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(k, _)| k))
        .collect();
    ks.sort_unstable();
    ks.dedup();
    for k in ks {
        let tx = x(k as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#eeeeee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            thousands(k)
        );
    }
    let _ = writeln!(
        out,
        r##"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="#000000"/>"##,
        TOP + plot_h,
        LEFT + PLOT_W
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">K idle registered children</text>"#,
        LEFT + PLOT_W / 2.0,
        TOP + plot_h + 42.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">ms per spawn+reap of /bin/true (median)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // The curves, then the legend.
    for (i, curve) in curves.iter().enumerate() {
        let (stroke, width, dash) = style(curve.row);
        let points: Vec<String> = curve
            .points
            .iter()
            .map(|&(k, ms)| format!("{:.1},{:.1}", x(k as f64), y(ms)))
            .collect();
        let dash = dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        let label = escape(&curve.row.to_string());
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}"{dash}><title>{label}</title></polyline>"#,
            points.join(" ")
        );
        let ly = TOP + i as f64 * LINE_H;
        let lx = LEFT + PLOT_W + 30.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{stroke}" stroke-width="{width}"{dash}/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            lx + 30.0,
            lx + 36.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V312: Version = Version {
        major: 3,
        minor: 12,
        patch: 1,
    };

    fn figures() -> Figures {
        let mut figures = Figures::default();
        // Two rounds; std at 1 ms then 2 ms at K = 0, 1.2 ms and 1.2 ms at K = 1,000.
        for (round, std0, std1000) in [(0, 1_000_000, 1_200_000), (1, 2_000_000, 1_200_000)] {
            figures.record(Row::Std, 0, round, std0);
            figures.record(Row::Std, 1000, round, std1000);
        }
        figures.record(Row::Tokio, 0, 0, 1_100_000);
        figures.record(Row::Tokio, 0, 1, 2_000_000);
        let safe = Row::Loopwatch(Watcher::Safe);
        figures.record(safe, 0, 0, 1_000_000);
        figures.record(safe, 0, 1, 2_400_000);
        figures.record(safe, 1000, 0, 4_800_000);
        figures.record(safe, 1000, 1, 3_600_000);
        let python = Row::CPython(V312, Watcher::Pidfd);
        figures.record(python, 0, 0, 1_500_000);
        figures.record(python, 0, 1, 3_000_000);
        figures.record(python, 1000, 0, 1_800_000);
        figures.fail(python, "returncode 255".into());
        figures.fail(
            Row::CPython(V312, Watcher::MultiLoop),
            "exit status 1".into(),
        );
        figures
    }

    #[test]
    fn versions_parse_only_release_names() {
        assert_eq!(Version::parse("3.12.1"), Some(V312));
        assert_eq!(Version::parse("3.12.1").unwrap().to_string(), "3.12.1");
        for name in ["3.13.0t", "pypy3.10-7.3.17", "3.12", "3.12.1.4", "", "3..1"] {
            assert_eq!(Version::parse(name), None, "{name}");
        }
        assert!(Version::parse("3.9.18") < Version::parse("3.10.0"));
    }

    #[test]
    fn ratios_pair_rounds_and_take_the_median() {
        let figures = figures();
        let safe = Row::Loopwatch(Watcher::Safe);
        // Round ratios 1.0 and 1.2: the lower median by nearest rank is 1.0.
        assert_eq!(figures.ratio(safe, 0), Some(1.0));
        // 4.0 and 3.0.
        assert_eq!(figures.ratio(safe, 1000), Some(3.0));
        assert_eq!(figures.median_ns(safe, 1000), Some(3_600_000));
        assert_eq!(figures.ratio(Row::Tokio, 1000), None);
    }

    #[test]
    fn the_table() {
        let expected = "\
| per reap, ratio to std spawn+wait | sequential (K = 0) | K = 1,000 |
|---|---|---|
| std | 1 (1.00 ms) | 1 (1.20 ms) |
| tokio | 1.00 | — |
| loopwatch safe | 1.00 | 3.00 |
| CPython 3.12.1 multi_loop | failed | failed |
| CPython 3.12.1 pidfd | 1.50 | 1.50 (1/2 rounds) |
";
        assert_eq!(figures().table(1), expected);
        let batch = figures().table(200);
        assert!(
            batch.starts_with(
                "| per reap, ratio to std spawn+wait | 200 at once (K = 0) | K = 1,000, 200 at once |\n"
            ),
            "{batch}"
        );
    }

    #[test]
    fn intervals_from_ten_rounds() {
        // Goal: from ten rounds on, a ratio comes with the order statistics of ranks
        // n/2 ∓ 0.98·√n of the rounds' ratios; with fewer, alone.
        let mut figures = Figures::default();
        let auto = Row::Loopwatch(Watcher::Auto);
        for round in 0..16 {
            figures.record(Row::Std, 0, round, 1_000_000);
            // Ratios 1.000, 1.001 … 1.015, recorded out of order.
            let r = (round * 7) % 16;
            figures.record(auto, 0, round, 1_000_000 + 1_000 * r as u64);
        }
        assert_eq!(figures.ratio(auto, 0), Some(1.007));
        // n = 16: ranks 8 ∓ 3.92, so 4 and 12.
        assert_eq!(figures.ratio_interval(auto, 0), Some((1.003, 1.011)));
        assert!(
            figures
                .table(1)
                .contains("| loopwatch auto | 1.007 (1.003–1.011) |")
        );
        assert_eq!(self::figures().ratio_interval(Row::Tokio, 0), None);
    }

    #[test]
    fn durations_and_thousands() {
        assert_eq!(duration(955_400), "955 µs");
        assert_eq!(duration(1_349_000), "1.35 ms");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn curves_leave_out_single_points() {
        let curves = figures().curves();
        let rows: Vec<Row> = curves.iter().map(|c| c.row).collect();
        assert_eq!(
            rows,
            [
                Row::Std,
                Row::Loopwatch(Watcher::Safe),
                Row::CPython(V312, Watcher::Pidfd)
            ]
        );
        assert_eq!(curves[1].points, [(0, 1.0), (1000, 3.6)]);
    }

    #[test]
    fn the_svg() {
        let curves = figures().curves();
        let svg = svg(&curves, "per-reap time <vs> K");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline ").count(), 3);
        assert!(svg.contains("per-reap time &lt;vs&gt; K"));
        for label in ["std", "loopwatch safe", "CPython 3.12.1 pidfd"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        // y runs from 0 to 4 ms (ticks of 1 ms) over 420 px from y = 40; x from 0 to
        // K = 1,000 over 560 px from x = 70. loopwatch safe: 1.0 ms at K = 0, 3.6 ms
        // at K = 1,000.
        assert!(
            svg.contains(
                r##"points="70.0,355.0 630.0,82.0" fill="none" stroke="#d62728" stroke-width="3""##
            ),
            "{svg}"
        );
        // Every tag opened is closed.
        assert_eq!(
            svg.matches("<polyline").count(),
            svg.matches("</polyline>").count()
        );
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(3.6), 1.0);
        assert_eq!(tick_step(12.0), 2.5);
        assert_eq!(tick_step(0.9), 0.2);
        assert_eq!(number(0.2 + 0.1), "0.3");
        assert_eq!(number(4.0), "4");
    }
}
