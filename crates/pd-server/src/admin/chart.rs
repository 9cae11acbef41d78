//! The overview's charts, computed on the server from the traffic ring: stacked bars of
//! lookups per second by class for each minute of the last hour, and the cache hit ratio
//! per minute as a line. The templates draw them as inline SVG from these numbers alone;
//! no script and no external asset is involved.

use std::time::SystemTime;

use crate::metrics::traffic::{LookupClass, MinuteCounts, TrafficSnapshot};

/// Width of the charts' coordinate system.
pub(super) const WIDTH: u32 = 720;
/// Left edge of the plot area (room for the axis labels).
const LEFT: f64 = 52.0;
/// Right edge of the plot area.
const RIGHT: f64 = 712.0;
/// Height of the lookup chart's coordinate system.
pub(super) const HEIGHT: u32 = 190;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 160.0;
/// Height of the ratio chart's coordinate system.
pub(super) const RATIO_HEIGHT: u32 = 96;
const RATIO_TOP: f64 = 8.0;
const RATIO_BOTTOM: f64 = 72.0;

/// One rectangle of a stacked bar.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bar {
    pub(super) x: String,
    pub(super) y: String,
    pub(super) width: String,
    pub(super) height: String,
    /// `local`, `remote`, `cached` or `refused`: the stylesheet colours it.
    pub(super) class: &'static str,
}

/// A transparent column over one minute, whose tooltip gives the minute's numbers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Column {
    pub(super) x: String,
    pub(super) width: String,
    pub(super) title: String,
}

/// A horizontal grid line with its label.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GridLine {
    pub(super) y: String,
    pub(super) label: String,
}

/// The lookups chart.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LookupChart {
    pub(super) bars: Vec<Bar>,
    pub(super) columns: Vec<Column>,
    pub(super) grid: Vec<GridLine>,
    /// Time labels under the plot: x and text.
    pub(super) ticks: Vec<(String, String)>,
    /// Whether the hour had no lookup at all.
    pub(super) empty: bool,
    /// A sentence describing the chart, for screen readers.
    pub(super) summary: String,
}

/// The cache hit ratio chart.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RatioChart {
    /// Polylines (`points` attributes), one per run of minutes that had remote lookups.
    pub(super) lines: Vec<String>,
    /// Single minutes between gaps, drawn as dots: x, y.
    pub(super) dots: Vec<(String, String)>,
    pub(super) grid: Vec<GridLine>,
    pub(super) ticks: Vec<(String, String)>,
    pub(super) empty: bool,
    pub(super) summary: String,
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// Minutes' x positions: the left edge and the width of a minute's slot.
fn slot(i: usize, n: usize) -> (f64, f64) {
    let step = (RIGHT - LEFT) / n.max(1) as f64;
    (LEFT + step * i as f64, step)
}

fn ticks(n: usize) -> Vec<(String, String)> {
    let (first, _) = slot(0, n);
    let (_, step) = slot(0, n);
    let half = slot(n / 2, n).0;
    vec![
        (fmt(first), format!("{n} min ago")),
        (fmt(half), format!("{} min ago", n - n / 2)),
        (fmt(RIGHT - step / 2.0), "now".to_owned()),
    ]
}

/// The smallest "nice" number (1, 2 or 5 times a power of ten) at or above `v`.
pub(super) fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * base >= v * (1.0 - 1e-9) {
            return m * base;
        }
    }
    10.0 * base
}

/// A rate per second as the axis shows it.
pub(super) fn rate(per_sec: f64) -> String {
    if per_sec == 0.0 {
        "0".to_owned()
    } else if per_sec < 0.005 {
        "< 0.01".to_owned()
    } else if per_sec >= 10.0 {
        format!("{per_sec:.0}")
    } else if per_sec >= 1.0 {
        format!("{per_sec:.1}")
    } else {
        format!("{per_sec:.2}")
    }
}

/// The minute's time of day (UTC, `HH:MM`).
pub(super) fn clock(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.get(11..16).unwrap_or_default().to_owned()
}

/// The cache hit ratio of a minute, when it had lookups of other domains' users.
pub(super) fn hit_ratio(cached: u64, remote: u64) -> Option<f64> {
    let all = cached + remote;
    (all > 0).then(|| cached as f64 / all as f64)
}

fn minute_title(m: &MinuteCounts) -> String {
    let total = m.total_lookups();
    let mut title = format!(
        "{} UTC: {} lookups ({}/s): local {}, remote {}, cached {}, refused {}",
        clock(m.start),
        total,
        rate(total as f64 / 60.0),
        m.lookups_of(LookupClass::Local),
        m.lookups_of(LookupClass::Remote),
        m.lookups_of(LookupClass::Cached),
        m.lookups_of(LookupClass::Refused),
    );
    if let Some(ratio) = hit_ratio(
        m.lookups_of(LookupClass::Cached),
        m.lookups_of(LookupClass::Remote),
    ) {
        title.push_str(&format!("; cache hits {:.0} %", ratio * 100.0));
    }
    title
}

/// The lookups chart of `snap`.
pub(super) fn lookups(snap: &TrafficSnapshot) -> LookupChart {
    let n = snap.minutes.len();
    let peak_count = snap
        .minutes
        .iter()
        .map(MinuteCounts::total_lookups)
        .max()
        .unwrap_or(0);
    let peak = peak_count as f64 / 60.0;
    let top = nice_ceiling(peak.max(0.01));
    let scale = (BOTTOM - TOP) / top;
    let mut bars = Vec::new();
    let mut columns = Vec::new();
    for (i, m) in snap.minutes.iter().enumerate() {
        let (x, step) = slot(i, n);
        let width = (step - 2.0).max(1.0);
        let mut y = BOTTOM;
        for class in LookupClass::ALL {
            let count = m.lookups_of(class);
            if count == 0 {
                continue;
            }
            let h = count as f64 / 60.0 * scale;
            y -= h;
            bars.push(Bar {
                x: fmt(x + 1.0),
                y: fmt(y),
                width: fmt(width),
                height: fmt(h),
                class: class.as_str(),
            });
        }
        columns.push(Column {
            x: fmt(x),
            width: fmt(step),
            title: minute_title(m),
        });
    }
    let grid = [1.0, 0.5, 0.0]
        .into_iter()
        .map(|f| GridLine {
            y: fmt(BOTTOM - (BOTTOM - TOP) * f),
            label: format!("{}/s", rate(top * f)),
        })
        .collect();
    let total: u64 = snap.minutes.iter().map(MinuteCounts::total_lookups).sum();
    let summary = if total == 0 {
        "No lookups in the last hour.".to_owned()
    } else {
        format!(
            "{total} lookups in the last hour ({}/s on average), at most {}/s in one minute.",
            rate(total as f64 / 3600.0),
            rate(peak),
        )
    };
    LookupChart {
        bars,
        columns,
        grid,
        ticks: ticks(n),
        empty: total == 0,
        summary,
    }
}

/// The cache hit ratio chart of `snap`.
pub(super) fn ratio(snap: &TrafficSnapshot) -> RatioChart {
    let n = snap.minutes.len();
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (i, m) in snap.minutes.iter().enumerate() {
        let (x, step) = slot(i, n);
        match hit_ratio(
            m.lookups_of(LookupClass::Cached),
            m.lookups_of(LookupClass::Remote),
        ) {
            Some(r) => current.push((
                x + step / 2.0,
                RATIO_BOTTOM - (RATIO_BOTTOM - RATIO_TOP) * r,
            )),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    for run in runs {
        if let [(x, y)] = run.as_slice() {
            dots.push((fmt(*x), fmt(*y)));
        } else {
            lines.push(
                run.iter()
                    .map(|(x, y)| format!("{},{}", fmt(*x), fmt(*y)))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    let grid = [(1.0, "100 %"), (0.5, "50 %"), (0.0, "0 %")]
        .into_iter()
        .map(|(f, label)| GridLine {
            y: fmt(RATIO_BOTTOM - (RATIO_BOTTOM - RATIO_TOP) * f),
            label: label.to_owned(),
        })
        .collect();
    let cached = snap.hour_lookups(LookupClass::Cached);
    let remote = snap.hour_lookups(LookupClass::Remote);
    let summary = match hit_ratio(cached, remote) {
        Some(r) => format!(
            "{:.0} % of the last hour's lookups of other domains' users were answered from the cache ({cached} of {}).",
            r * 100.0,
            cached + remote
        ),
        None => "No lookups of other domains' users in the last hour.".to_owned(),
    };
    RatioChart {
        empty: lines.is_empty() && dots.is_empty(),
        lines,
        dots,
        grid,
        ticks: ticks(n),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn snapshot(counts: &[[u64; 4]]) -> TrafficSnapshot {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000 / 60 * 60);
        TrafficSnapshot {
            minutes: counts
                .iter()
                .enumerate()
                .map(|(i, c)| MinuteCounts {
                    start: start + Duration::from_secs(60 * i as u64),
                    lookups: *c,
                    problems: vec![0; pd_proto::ProblemType::ALL.len()],
                })
                .collect(),
            total_lookups: [0; 4],
            total_problems: vec![0; pd_proto::ProblemType::ALL.len()],
        }
    }

    #[test]
    fn nice_ceilings() {
        for (v, nice) in [
            (0.0, 1.0),
            (0.013, 0.02),
            (0.5, 0.5),
            (0.51, 1.0),
            (3.0, 5.0),
            (120.0, 200.0),
        ] {
            let got = nice_ceiling(v);
            assert!((got - nice).abs() < 1e-9, "{v}: {got}");
        }
    }

    #[test]
    fn bars_stack_by_class_and_scale_to_the_peak() {
        // 60 lookups in the busiest minute: 1/s, which is the top of the axis.
        let snap = snapshot(&[[0; 4], [30, 0, 24, 6], [6, 6, 0, 0]]);
        let chart = lookups(&snap);
        assert!(!chart.empty);
        assert_eq!(chart.grid[0].label, "1.0/s");
        assert_eq!(chart.grid[2].label, "0/s");
        let classes: Vec<&str> = chart.bars.iter().map(|b| b.class).collect();
        assert_eq!(classes, ["local", "cached", "refused", "local", "remote"]);
        // The busiest minute's stack reaches the top of the plot exactly.
        let top: f64 = chart.bars[2].y.parse().unwrap();
        assert!((top - TOP).abs() < 0.11, "{top}");
        let heights: f64 = chart.bars[..3]
            .iter()
            .map(|b| b.height.parse::<f64>().unwrap())
            .sum();
        assert!((heights - (BOTTOM - TOP)).abs() < 0.3, "{heights}");
        assert_eq!(chart.columns.len(), 3);
        assert!(
            chart.columns[1].title.contains(
                "60 lookups (1.0/s): local 30, remote 0, cached 24, refused 6; cache hits 100 %"
            ),
            "{}",
            chart.columns[1].title
        );
        assert!(chart.summary.contains("72 lookups"), "{}", chart.summary);
    }

    #[test]
    fn an_idle_hour_says_so() {
        let chart = lookups(&snapshot(&[[0; 4]; 60]));
        assert!(chart.empty);
        assert!(chart.bars.is_empty());
        assert_eq!(chart.summary, "No lookups in the last hour.");
        let r = ratio(&snapshot(&[[0; 4]; 60]));
        assert!(r.empty);
    }

    #[test]
    fn the_ratio_line_breaks_where_no_remote_lookup_happened() {
        let snap = snapshot(&[
            [0, 1, 1, 0],
            [0, 0, 4, 0],
            [5, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 0, 0],
            [0, 3, 1, 0],
            [0, 0, 2, 0],
        ]);
        let r = ratio(&snap);
        assert_eq!(r.lines.len(), 2, "{:?}", r.lines);
        assert_eq!(r.dots.len(), 1, "{:?}", r.dots);
        // 100 % sits at the top, 0 % at the bottom.
        assert!(r.lines[0].contains(&format!(",{}", fmt(RATIO_TOP))));
        assert!(r.dots[0].1 == fmt(RATIO_BOTTOM));
        assert!(r.summary.starts_with("62 %"), "{}", r.summary);
    }
}
