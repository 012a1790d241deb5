//! The report of a set of runs: a Markdown summary (one row per scenario,
//! recovery per fault kind) and one SVG timeline per run (calls waiting
//! and answered per second, faults marked), drawn here from the history.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checker::Verdict;
use crate::history::{CallKind, Event, Record};

/// One run as the report shows it.
#[derive(Debug)]
pub struct Row {
    pub verdict: Verdict,
    pub backend: String,
    pub multiple: f64,
    pub elapsed_s: f64,
    /// The timeline's file name, next to the summary.
    pub svg: String,
    pub history: String,
}

/// The p-th percentile (0–100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(value: Option<i64>) -> String {
    value.map_or("–".into(), |v| format!("{v} ms"))
}

/// The recovery times of `verdict`'s faults, sorted, and how many faults
/// never recovered.
fn recoveries<'a>(
    faults: impl Iterator<Item = &'a crate::checker::Recovery>,
    figure: fn(&crate::checker::Recovery) -> Option<i64>,
) -> (Vec<i64>, usize) {
    let mut times = Vec::new();
    let mut never = 0;
    for fault in faults {
        match figure(fault) {
            Some(t) => times.push(t),
            None => never += 1,
        }
    }
    times.sort_unstable();
    (times, never)
}

/// The Markdown summary of `rows`.
pub fn markdown(rows: &[Row], title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(
        out,
        "| scenario | seed | load | backend | faults | offered | answered | abandoned | deflected | lost | double | order violations | stream gaps | recovery p50 | p99 | max | time | timeline |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let v = &row.verdict;
        let (times, never) = recoveries(v.faults.iter(), |f| f.recovery_ms);
        let never = if never > 0 { format!(" ({never} never)") } else { String::new() };
        let _ = writeln!(
            out,
            "| {} | {} | {}x | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s | [svg]({}) |",
            v.scenario,
            v.seed,
            row.multiple,
            row.backend,
            v.faults.len(),
            never,
            v.offered,
            v.answered,
            v.abandoned,
            v.deflected,
            v.lost,
            v.double_assignments + v.double_connects + v.double_ends,
            v.order_violations,
            v.stream_gaps,
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(times.last().copied()),
            row.elapsed_s,
            row.svg,
        );
    }

    let _ = writeln!(out, "\n## Recovery per fault kind\n");
    let _ = writeln!(
        out,
        "| fault kind | faults | never recovered | p50 | p99 | max | net of busy informants: p50 | p99 | max |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut kinds: BTreeMap<&str, Vec<&crate::checker::Recovery>> = BTreeMap::new();
    for row in rows {
        for fault in &row.verdict.faults {
            kinds.entry(fault.kind.as_str()).or_default().push(fault);
        }
    }
    for (kind, faults) in &kinds {
        let (times, never) = recoveries(faults.iter().copied(), |f| f.recovery_ms);
        let (net, _) = recoveries(faults.iter().copied(), |f| f.recovery_net_ms);
        let _ = writeln!(
            out,
            "| {kind} | {} | {never} | {} | {} | {} | {} | {} | {} |",
            faults.len(),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(times.last().copied()),
            ms(percentile(&net, 50.0)),
            ms(percentile(&net, 99.0)),
            ms(net.last().copied())
        );
    }
    let total_faults: usize = rows.iter().map(|r| r.verdict.faults.len()).sum();
    let total = |f: fn(&Verdict) -> usize| rows.iter().map(|r| f(&r.verdict)).sum::<usize>();
    let _ = writeln!(
        out,
        "\nTotal: {total_faults} faults, {} calls offered, {} lost, {} double (assignments, connects, ends), {} order violations, {} stream gaps.",
        total(|v| v.offered),
        total(|v| v.lost),
        total(|v| v.double_assignments + v.double_connects + v.double_ends),
        total(|v| v.order_violations),
        total(|v| v.stream_gaps),
    );

    let mut unsupported: Vec<&String> = rows.iter().flat_map(|r| &r.verdict.unsupported).collect();
    unsupported.sort();
    unsupported.dedup();
    if !unsupported.is_empty() {
        let _ = writeln!(out, "\n## Faults this host cannot inject\n");
        for line in unsupported {
            let _ = writeln!(out, "- {line}");
        }
    }

    let undetermined: Vec<(&Row, &String)> =
        rows.iter().flat_map(|r| r.verdict.order_undetermined.iter().map(move |u| (r, u))).collect();
    if !undetermined.is_empty() {
        let _ = writeln!(out, "\n## Order the history cannot tell\n");
        let _ = writeln!(
            out,
            "A call offered to an informant whose node froze, told by her session late and never by the call's stream, was routed at a time the history does not tell (docs/chaos.md). Pairs it would put out of order:\n"
        );
        for (row, line) in undetermined.iter().take(50) {
            let _ = writeln!(out, "- {} seed {}: {line}", row.verdict.scenario, row.verdict.seed);
        }
    }

    let with_findings: Vec<&Row> = rows.iter().filter(|r| !r.verdict.findings.is_empty()).collect();
    if !with_findings.is_empty() {
        let _ = writeln!(out, "\n## Findings\n");
        for row in with_findings {
            let v = &row.verdict;
            let _ = writeln!(out, "### {} seed {} ({})\n", v.scenario, v.seed, row.history);
            for f in v.findings.iter().take(50) {
                let _ = writeln!(
                    out,
                    "- {:?} call `{}`{}{} at {}: {}",
                    f.kind,
                    f.call_id,
                    f.other_call_id.as_ref().map_or(String::new(), |o| format!(" (other call `{o}`)")),
                    f.informant_id.as_ref().map_or(String::new(), |i| format!(" informant `{i}`")),
                    f.at_ms,
                    f.detail
                );
            }
            if v.findings.len() > 50 {
                let _ = writeln!(out, "- … and {} more", v.findings.len() - 50);
            }
            let _ = writeln!(out);
        }
    }
    out
}

/// Per second of the run: calls waiting (acknowledged, not yet offered nor
/// ended) at the end of the second, and calls connected during it.
pub fn timeline(records: &[Record]) -> (i64, Vec<(u32, u32)>) {
    let start = records.first().map_or(0, |r| r.t_ms);
    let end = records.last().map_or(0, |r| r.t_ms);
    let seconds = (((end - start) / 1000) + 1).clamp(1, 24 * 3600) as usize;
    let mut arrivals: BTreeMap<&str, i64> = BTreeMap::new();
    let mut left: BTreeMap<&str, i64> = BTreeMap::new();
    let mut answered = vec![0u32; seconds];
    for record in records {
        match &record.event {
            Event::OfferAcked { call_id, arrived_at_ms, .. } => {
                arrivals.entry(call_id).or_insert(*arrived_at_ms);
            }
            Event::CallEvent { call_id, at_ms, kind, .. } => {
                if matches!(kind, CallKind::Offered) || kind.is_end() {
                    let entry = left.entry(call_id).or_insert(*at_ms);
                    *entry = (*entry).min(*at_ms);
                }
                if *kind == CallKind::Connected {
                    let s = ((at_ms - start) / 1000).clamp(0, seconds as i64 - 1) as usize;
                    answered[s] += 1;
                }
            }
            _ => {}
        }
    }
    let mut waiting = vec![0u32; seconds];
    for (call, arrived) in &arrivals {
        let from = ((arrived - start) / 1000).clamp(0, seconds as i64 - 1) as usize;
        let until = left.get(call).map_or(seconds, |t| (((t - start) / 1000).clamp(0, seconds as i64)) as usize);
        for w in waiting.iter_mut().take(until).skip(from) {
            *w += 1;
        }
    }
    (start, waiting.into_iter().zip(answered).collect())
}

/// The SVG timeline of one run.
pub fn svg(records: &[Record], title: &str) -> String {
    let (start, series) = timeline(records);
    let (width, height, margin) = (900.0, 260.0, 40.0);
    let plot_w = width - 2.0 * margin;
    let plot_h = height - 2.0 * margin;
    let max = series.iter().map(|(w, a)| (*w).max(*a)).max().unwrap_or(1).max(1) as f64;
    let n = series.len().max(2) as f64;
    let x = |s: f64| margin + plot_w * s / (n - 1.0);
    let y = |v: f64| margin + plot_h * (1.0 - v / max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{margin}" y="16" font-size="13">{}</text>"#, escape(title));
    // Faults: a band from start to end, named.
    let mut open: BTreeMap<u32, (i64, String)> = BTreeMap::new();
    let mut bands = Vec::new();
    for record in records {
        match &record.event {
            Event::Fault { fault_id, kind, node, .. } => {
                let name = match node {
                    Some(node) => format!("{kind} {node}"),
                    None => kind.clone(),
                };
                open.insert(*fault_id, (record.t_ms, name));
            }
            Event::FaultEnded { fault_id, .. } => {
                if let Some((from, name)) = open.remove(fault_id) {
                    bands.push((from, record.t_ms, name));
                }
            }
            _ => {}
        }
    }
    let last = records.last().map_or(start, |r| r.t_ms);
    bands.extend(open.into_values().map(|(from, name)| (from, last, name)));
    for (from, to, name) in &bands {
        let x0 = x((from - start) as f64 / 1000.0);
        let x1 = x((to - start) as f64 / 1000.0).max(x0 + 2.0);
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{margin}" width="{:.1}" height="{plot_h}" fill="#d62728" fill-opacity="0.15"/><text x="{x0:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
            x1 - x0,
            margin - 4.0,
            escape(name)
        );
    }
    // Axes.
    let _ = writeln!(
        out,
        r#"<line x1="{margin}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{margin}" y1="{margin}" x2="{margin}" y2="{0}" stroke="black"/>"#,
        margin + plot_h,
        margin + plot_w
    );
    let _ = writeln!(
        out,
        r#"<text x="4" y="{:.1}">{max}</text><text x="4" y="{:.1}">0</text>"#,
        margin + 4.0,
        margin + plot_h
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{} s</text>"#,
        margin + plot_w,
        height - 8.0,
        series.len()
    );
    let line = |pick: fn(&(u32, u32)) -> u32| {
        series
            .iter()
            .enumerate()
            .map(|(s, v)| format!("{:.1},{:.1}", x(s as f64), y(f64::from(pick(v)))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ =
        writeln!(out, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##, line(|v| v.0));
    let _ =
        writeln!(out, r##"<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" points="{}"/>"##, line(|v| v.1));
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="16" fill="#1f77b4">calls waiting</text><text x="{:.1}" y="16" fill="#2ca02c">answered per second</text>"##,
        width - 260.0,
        width - 160.0
    );
    let _ = writeln!(out, "</svg>");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_timeline_counts_waiting_and_answered_calls_per_second() {
        let ack = |t, id: &str| Record {
            t_ms: t,
            event: Event::OfferAcked { call_id: id.into(), created: true, arrived_at_ms: t },
        };
        let ev = |t, id: &str, kind| Record {
            t_ms: t,
            event: Event::CallEvent {
                call_id: id.into(),
                sequence: 2,
                at_ms: t,
                kind,
                queue_id: String::new(),
                informant_id: "a".into(),
                reason: String::new(),
            },
        };
        let records = vec![
            ack(0, "c1"),
            ack(500, "c2"),
            ev(2_100, "c1", CallKind::Offered),
            ev(2_200, "c1", CallKind::Connected),
            ev(3_500, "c2", CallKind::Abandoned),
            Record { t_ms: 4_000, event: Event::End { truncated: false } },
        ];
        let (_, series) = timeline(&records);
        assert_eq!(series, vec![(2, 0), (2, 0), (1, 1), (0, 0), (0, 0)]);
        let picture = svg(&records, "t");
        assert!(picture.starts_with("<svg") && picture.contains("polyline"));
    }
}
