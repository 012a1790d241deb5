//! `chaos-tests`: runs one scenario, the whole matrix, or re-checks a
//! history; writes a Markdown report and an SVG timeline per run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chaos_tests::history;
use chaos_tests::report::{self, Row};
use chaos_tests::scenario::{self, Scenario};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "relais chaos tests: run a scenario or the matrix, or re-check a history")]
struct Args {
    /// Re-checks a history (JSON lines), prints the verdict, fails on any finding.
    #[arg(long, conflicts_with_all = ["scenario", "matrix"])]
    check: Option<PathBuf>,
    /// Runs one scenario (see --list), or several, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Injects this many faults in each scenario: its list of faults cut
    /// short, or repeated.
    #[arg(long)]
    faults: Option<usize>,
    /// The scenario's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The load, as a multiple of the CAI-like peak.
    #[arg(long, default_value_t = 1.0)]
    multiple: f64,
    /// Runs the matrix: every scenario once per seed of --seeds, the k-th
    /// seed at the k-th load of --multiples (taken in turn).
    #[arg(long)]
    matrix: bool,
    /// The matrix's seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    seeds: Vec<u64>,
    /// The matrix's loads, as multiples of the CAI-like peak.
    #[arg(long, value_delimiter = ',', default_value = "2,10")]
    multiples: Vec<f64>,
    /// The matrix starts no scenario after this many minutes (its two
    /// default passes take about 33).
    #[arg(long, default_value_t = 40)]
    budget_min: u64,
    /// Where histories, logs and the report go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// Rebuilds the report (and the timelines) of --out from the histories
    /// it holds, re-checked.
    #[arg(long, conflicts_with_all = ["scenario", "matrix", "check"])]
    report_only: bool,
    /// Runs the nodes as containers of this image (e.g. relais:0.1.0, which
    /// `make image` builds) rather than as `relais-node` processes; etcd and
    /// the workload stay on the host.
    #[arg(long, conflicts_with_all = ["check", "report_only"])]
    image: Option<String>,
    /// Lists the scenarios.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.list {
        for s in Scenario::catalog() {
            let faults: Vec<&str> = s.faults.iter().map(|f| f.name()).collect();
            println!(
                "{:<18} {} nodes, {} etcd, faults {}",
                s.name,
                s.spec.nodes,
                s.spec.etcd_members,
                faults.join(", ")
            );
        }
        return Ok(());
    }
    if let Some(path) = args.check {
        return check(&path);
    }
    if args.report_only {
        return report_only(&args.out);
    }
    let mut runs: Vec<(Scenario, u64)> = if args.matrix {
        anyhow::ensure!(
            !args.seeds.is_empty() && !args.multiples.is_empty(),
            "--seeds and --multiples need at least one value each"
        );
        anyhow::ensure!(args.multiples.iter().all(|m| m.is_finite() && *m > 0.0), "--multiples must be positive");
        matrix(&args.seeds, &args.multiples)
    } else if !args.scenario.is_empty() {
        let mut runs = Vec::new();
        for name in &args.scenario {
            let mut scenario = Scenario::named(name).with_context(|| format!("no scenario {name} (see --list)"))?;
            scenario.multiple = args.multiple;
            runs.push((scenario, args.seed));
        }
        runs
    } else {
        bail!("say --scenario <name>, --matrix or --check <history.jsonl> (see --help)");
    };
    anyhow::ensure!(args.faults != Some(0), "--faults must be at least 1");
    for (scenario, _) in &mut runs {
        scenario.image.clone_from(&args.image);
        if let Some(n) = args.faults {
            scenario.faults = scenario.faults.iter().copied().cycle().take(n).collect();
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        // Ctrl-C or SIGTERM drops the run, whose cluster then stops its
        // processes and removes its namespaces.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = run_all(runs, &args.out, Duration::from_secs(args.budget_min * 60)) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    })
}

/// Every scenario once per seed, the k-th seed at the k-th load (the loads
/// taken in turn): with the defaults, the catalog at 2x the peak with seed 1,
/// then at 10x with seed 2.
fn matrix(seeds: &[u64], multiples: &[f64]) -> Vec<(Scenario, u64)> {
    seeds
        .iter()
        .zip(multiples.iter().cycle())
        .flat_map(|(seed, multiple)| {
            Scenario::catalog().into_iter().map(move |mut scenario| {
                scenario.multiple = *multiple;
                (scenario, *seed)
            })
        })
        .collect()
}

async fn run_all(runs: Vec<(Scenario, u64)>, out: &Path, budget: Duration) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut could_not_run = 0;
    for (scenario, seed) in runs {
        if started.elapsed() > budget {
            skipped.push(format!("{} seed {seed}", scenario.name));
            continue;
        }
        eprintln!("chaos: {} seed {seed} at {}x …", scenario.name, scenario.multiple);
        let result = match scenario::run(&scenario, seed, out).await {
            Ok(result) => result,
            Err(e) => {
                eprintln!("chaos: {} seed {seed} could not run: {e:#}", scenario.name);
                skipped.push(format!("{} seed {seed} (could not run: {e:#})", scenario.name));
                could_not_run += 1;
                continue;
            }
        };
        let records = history::read(&result.history)?;
        let svg_name = format!("{}-{seed}.svg", scenario.name);
        let title = format!("{} seed {seed}, {}x the CAI-like peak", scenario.name, scenario.multiple);
        std::fs::write(out.join(&svg_name), report::svg(&records, &title))?;
        let v = &result.verdict;
        eprintln!(
            "chaos: {} seed {seed}: {} offered, {} answered, {} lost, {} double, {} order violations, {} stream gaps, {} findings, {:.0} s",
            scenario.name,
            v.offered,
            v.answered,
            v.lost,
            v.double_assignments + v.double_connects + v.double_ends,
            v.order_violations,
            v.stream_gaps,
            v.findings.len(),
            result.elapsed.as_secs_f64()
        );
        rows.push(Row {
            verdict: result.verdict,
            backend: result.backend.name().into(),
            multiple: scenario.multiple,
            elapsed_s: result.elapsed.as_secs_f64(),
            svg: svg_name,
            history: result.history.strip_prefix(out).unwrap_or(&result.history).display().to_string(),
        });
        // Each run's report as it goes, so that an interrupted matrix keeps its figures.
        write_report(out, &rows, &skipped)?;
    }
    write_report(out, &rows, &skipped)?;
    println!("chaos: report in {}", out.join("report.md").display());
    let findings: usize = rows.iter().map(|r| r.verdict.findings.len()).sum();
    anyhow::ensure!(findings == 0, "{findings} finding(s): see {}", out.join("report.md").display());
    anyhow::ensure!(
        could_not_run == 0,
        "{could_not_run} run(s) could not run: see {}",
        out.join("report.md").display()
    );
    Ok(())
}

fn write_report(out: &Path, rows: &[Row], skipped: &[String]) -> Result<()> {
    let mut md = report::markdown(rows, "relais chaos report");
    if !skipped.is_empty() {
        md.push_str("\n## Not run\n\n");
        for s in skipped {
            md.push_str(&format!("- {s}\n"));
        }
    }
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}

/// The report of every history under `out`, re-checked.
fn report_only(out: &Path) -> Result<()> {
    let mut rows = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort_by_key(|d| std::fs::metadata(d.join("history.jsonl")).and_then(|m| m.modified()).ok());
    for dir in dirs {
        let path = dir.join("history.jsonl");
        if !path.is_file() {
            continue;
        }
        let records = history::read(&path)?;
        let (mut multiple, mut backend) = (1.0, String::from("-"));
        if let Some(history::Event::Run { multiple: m, backend: b, scenario, .. }) = records.first().map(|r| &r.event) {
            backend = b.clone();
            multiple = if *m > 0.0 {
                *m
            } else {
                scenario.rsplit_once('-').and_then(|(_, x)| x.strip_suffix('x')?.parse().ok()).unwrap_or(1.0)
            };
        }
        let verdict = chaos_tests::checker::check(&records);
        let svg_name = format!("{}-{}.svg", verdict.scenario, verdict.seed);
        let title = format!("{} seed {}, {multiple}x the CAI-like peak", verdict.scenario, verdict.seed);
        std::fs::write(out.join(&svg_name), report::svg(&records, &title))?;
        rows.push(Row {
            backend,
            multiple,
            elapsed_s: (verdict.end_ms - verdict.start_ms) as f64 / 1000.0,
            svg: svg_name,
            history: path.strip_prefix(out).unwrap_or(&path).display().to_string(),
            verdict,
        });
    }
    write_report(out, &rows, &[])?;
    println!("chaos: report in {}", out.join("report.md").display());
    Ok(())
}

fn check(path: &Path) -> Result<()> {
    let records = history::read(path)?;
    let verdict = chaos_tests::checker::check(&records);
    let row = Row {
        backend: "-".into(),
        multiple: 0.0,
        elapsed_s: (verdict.end_ms - verdict.start_ms) as f64 / 1000.0,
        svg: "-".into(),
        history: path.display().to_string(),
        verdict,
    };
    print!("{}", report::markdown(std::slice::from_ref(&row), &format!("check of {}", path.display())));
    anyhow::ensure!(row.verdict.clean(), "{} finding(s)", row.verdict.findings.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_runs_every_scenario_once_per_seed_each_seed_at_its_load() {
        let catalog: Vec<String> = Scenario::catalog().into_iter().map(|s| s.name).collect();
        let runs = matrix(&[1, 2, 3], &[2.0, 10.0]);
        assert_eq!(runs.len(), 3 * catalog.len());
        for (pass, (seed, multiple)) in [(1, 2.0), (2, 10.0), (3, 2.0)].into_iter().enumerate() {
            let chunk = &runs[pass * catalog.len()..(pass + 1) * catalog.len()];
            let names: Vec<&str> = chunk.iter().map(|(s, _)| s.name.as_str()).collect();
            assert_eq!(names, catalog.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(chunk.iter().all(|(s, n)| *n == seed && s.multiple == multiple), "pass {pass}");
        }
    }
}
