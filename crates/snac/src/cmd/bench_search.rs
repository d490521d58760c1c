//! `snac bench search`: how good each sampler's searches are. For every
//! sampler and seed it runs a real search (real training, a study in
//! memory, one trial after the other) and records after each trial the
//! hypervolume of accuracy (up) and BOPs (down), normalised by the fixed
//! reference point (accuracy 0, BOPs = the largest the search space can
//! produce): 1 would be a perfect model at zero cost. It writes
//! `search_quality.csv` (sampler, seed, trial, elapsed_s, hypervolume), the
//! plot `search_quality.png`/`.svg` (median and spread over seeds against
//! trials) and prints the medians.

use crate::cli::SearchBenchArgs;
use crate::setup::SearchSetup;
use crate::trial::{evaluate_trial, objective_values};
use anyhow::{Context, Result, bail};
use snac_core::config::{self, Experiment, Objective, PrunerKind, SamplerKind};
use snac_core::search::pareto::hypervolume_2d;
use snac_core::search::samplers::SamplerChoice;
use snac_core::search::{Direction, Distribution, Study};
use snac_core::space::{self, Suggest};
use snac_report::quality::{QualityCurve, QualityPlot};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One sampler to compare: its label, kind, budget and NSGA-II population.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    label: String,
    kind: SamplerKind,
    trials: usize,
    population: Option<usize>,
    /// `search.pruner` for this entry (`tpe+median`).
    pruner: PrunerKind,
}

/// The sampler `entry` runs with the config's TPE settings.
fn resolve(entry: &Entry, search: &config::SearchConfig) -> SamplerChoice {
    SamplerChoice::resolve(entry.kind, entry.trials, entry.population, search.n_startup_trials, search.tpe_multivariate)
}

/// One CSV row: the hypervolume after `trial` trials of one search.
#[derive(Clone, Debug)]
struct Row {
    label: String,
    seed: u64,
    trial: usize,
    elapsed_s: f64,
    hypervolume: f64,
}

/// Parses `--samplers`: `name[:trials[:population]]`, comma-separated.
fn parse_entries(spec: &str, default_trials: usize) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (sampler_part, pruner) = match item.split_once('+') {
            Some((sampler, pruner)) => match PrunerKind::parse(pruner) {
                Some(kind) => (sampler, kind),
                None => {
                    bail!("--samplers: '{pruner}' (in '{item}') is not a pruner; accepted: {}", PrunerKind::ACCEPTED)
                }
            },
            None => (item, PrunerKind::None),
        };
        let mut parts = sampler_part.split(':');
        let name = parts.next().unwrap_or_default();
        let accepted = format!("{} (each optionally :TRIALS[:POPULATION], e.g. nsga2:150:50)", SamplerKind::ACCEPTED);
        let Some(kind) = SamplerKind::parse(name) else {
            bail!("--samplers: '{name}' (in '{item}') is not a sampler; accepted: {accepted}");
        };
        let mut number = |what: &str| -> Result<Option<usize>> {
            parts
                .next()
                .map(|n| {
                    n.parse::<usize>().ok().filter(|&v| v >= 2).with_context(|| {
                        format!("--samplers: '{n}' (in '{item}') is not a {what}; accepted: a whole number ≥ 2")
                    })
                })
                .transpose()
        };
        let trials = number("trial count")?.unwrap_or(default_trials);
        let population = number("population")?;
        let mut label = match (kind, population) {
            (SamplerKind::Nsga2, Some(p)) => format!("nsga2(pop {p})"),
            (SamplerKind::Nsga2, None) => "nsga2(pop 50)".to_string(),
            (SamplerKind::Auto, _) => "auto".to_string(),
            (SamplerKind::Tpe, _) => "tpe".to_string(),
            (SamplerKind::Random, _) => "random".to_string(),
        };
        if trials != default_trials {
            label = format!("{label}@{trials}");
        }
        if pruner != PrunerKind::None {
            label = format!("{label}+{}", pruner.name());
        }
        entries.push(Entry { label, kind, trials, population, pruner });
    }
    if entries.is_empty() {
        bail!("--samplers: '{spec}' names no sampler; accepted: a comma-separated list of {}", SamplerKind::ACCEPTED);
    }
    Ok(entries)
}

/// The experiment to search and what it is: the config, else tutorial 1 on
/// MNIST (accuracy and BOPs) when its data is found, else the embedded
/// digits example.
fn load_setup(args: &SearchBenchArgs) -> Result<(SearchSetup, String)> {
    let with_epochs = |mut experiment: Experiment| {
        if let Some(epochs) = args.epochs {
            experiment.search.epochs = epochs;
        }
        experiment
    };
    if let Some(path) = &args.config {
        let setup = SearchSetup::prepare(with_epochs(config::load(path)?))?;
        return Ok((setup, path.display().to_string()));
    }
    let t1 = config::load_str(super::bench::T1_BENCH, Path::new("<tutorial 1 benchmark>"))?;
    match SearchSetup::prepare(with_epochs(t1)) {
        Ok(setup) => Ok((setup, "tutorial 1 (MNIST 8×8, subset 10000)".to_string())),
        Err(e) => {
            log::info!("tutorial 1's MNIST not found ({e:#}); using the embedded digits example");
            let digits = config::load_str(super::EXAMPLE_CONFIG, Path::new("<embedded examples/digits_mlp.yaml>"))?;
            Ok((SearchSetup::prepare(with_epochs(digits))?, "embedded digits example".to_string()))
        }
    }
}

/// Picks the largest value of every parameter: the costliest architecture.
struct Largest;

impl Suggest for Largest {
    fn suggest(&mut self, _name: &str, distribution: Distribution) -> Result<f64> {
        Ok(match &distribution {
            Distribution::Int { high, .. } => *high as f64,
            Distribution::Float { high, .. } => *high,
            Distribution::Categorical { choices } => {
                let numeric: Vec<Option<f64>> = choices.iter().map(|c| c.as_f64()).collect();
                if numeric.iter().all(Option::is_some) {
                    let best =
                        numeric.iter().enumerate().max_by(|a, b| a.1.unwrap_or(0.0).total_cmp(&b.1.unwrap_or(0.0)));
                    best.map_or(0, |(i, _)| i) as f64
                } else {
                    (choices.len() - 1) as f64
                }
            }
        })
    }
}

/// The reference BOPs: the largest of the costliest architecture and of
/// 2000 random ones.
fn max_bops(setup: &SearchSetup) -> Result<f64> {
    let bops = |arch| snac_core::cost::bops(&arch, setup.formula, snac_core::cost::GLOBAL_SEARCH_BITS);
    let mut largest = bops(space::decode(&setup.spec, &mut Largest)?)?;
    struct Draw(rand_chacha::ChaCha8Rng);
    impl Suggest for Draw {
        fn suggest(&mut self, _name: &str, distribution: Distribution) -> Result<f64> {
            Ok(distribution.sample(&mut self.0))
        }
    }
    let mut draw = Draw(rand::SeedableRng::seed_from_u64(0));
    for _ in 0..2000 {
        largest = largest.max(bops(space::decode(&setup.spec, &mut draw)?)?);
    }
    Ok(largest)
}

/// One search of `entry` with `seed`: its rows, one per trial.
fn run_search(
    base: &SearchSetup,
    entry: &Entry,
    seed: u64,
    reference_bops: f64,
    columns: [usize; 2],
) -> Result<Vec<Row>> {
    let mut experiment = base.experiment.clone();
    experiment.search.seed = seed;
    experiment.search.n_trials = entry.trials;
    experiment.search.workers = Some(1);
    experiment.search.pruner = entry.pruner;
    let setup = SearchSetup::with_dataset(experiment, (*base.dataset).clone())?;
    let choice = resolve(entry, &setup.experiment.search);
    let storage = snac_core::storage::open("memory:")?;
    let study = Study::create_or_load(storage, "bench", &setup.directions(), choice.build(1), seed)?;
    let pruning = crate::pruning::Pruning::of(&setup, &study);
    let started = Instant::now();
    let mut points: Vec<[f64; 2]> = Vec::new();
    let mut rows = Vec::with_capacity(entry.trials);
    for n in 1..=entry.trials {
        let mut trial = study.ask()?;
        match evaluate_trial(&setup, &mut trial, pruning.as_ref()) {
            Ok(result) => {
                let values = objective_values(&setup, &result);
                points.push([values[columns[0]], values[columns[1]]]);
                study.tell(&trial, Ok(values))?;
            }
            // A pruned trial adds nothing to the front (it has no values).
            Err(e) if crate::pruning::pruned(&e).is_some() => {
                study.tell_pruned(&trial)?;
            }
            Err(e) => {
                study.tell(&trial, Err(format!("{e:#}")))?;
            }
        }
        let area = hypervolume_2d(&points, [0.0, reference_bops], [Direction::Maximize, Direction::Minimize]);
        let (label, elapsed_s) = (entry.label.clone(), started.elapsed().as_secs_f64());
        rows.push(Row { label, seed, trial: n, elapsed_s, hypervolume: area / reference_bops });
    }
    log::info!(
        "{} seed {seed}: hypervolume {:.4} after {} trials in {:.1} s ({})",
        entry.label,
        rows.last().map_or(0.0, |r| r.hypervolume),
        entry.trials,
        started.elapsed().as_secs_f64(),
        choice.why
    );
    Ok(rows)
}

/// Median, min and max.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    (median, values[0], values[n - 1])
}

/// Per entry label, per trial count: (median, min, max) over seeds.
fn curves(rows: &[Row], entries: &[Entry]) -> Vec<QualityCurve> {
    entries
        .iter()
        .map(|entry| {
            let points = (1..=entry.trials)
                .filter_map(|t| {
                    let at: Vec<f64> =
                        rows.iter().filter(|r| r.label == entry.label && r.trial == t).map(|r| r.hypervolume).collect();
                    (!at.is_empty()).then(|| {
                        let (median, lo, hi) = spread(at);
                        (t as f64, median, lo, hi)
                    })
                })
                .collect();
            QualityCurve { label: entry.label.clone(), points }
        })
        .collect()
}

pub fn bench_search(args: &SearchBenchArgs) -> Result<ExitCode> {
    let entries = parse_entries(&args.samplers, args.trials)?;
    anyhow::ensure!(args.seeds >= 1, "--seeds: 0; accepted: a whole number ≥ 1");
    let (base, what) = load_setup(args)?;
    let column = |objective: Objective| base.objectives.iter().position(|(o, _)| *o == objective);
    let (Some(accuracy), Some(bops)) = (column(Objective::PerformanceMetric), column(Objective::Bops)) else {
        bail!(
            "{}: search.objective_names must include performance_metric and bops for the hypervolume; \
             accepted: e.g. [performance_metric, bops]",
            base.experiment.source.display()
        );
    };
    let reference_bops = max_bops(&base)?;
    let names: Vec<String> = entries
        .iter()
        .map(|e| {
            let choice = resolve(e, &base.experiment.search);
            format!("{} = {}", e.label, choice.why)
        })
        .collect();
    println!(
        "search quality on {what}: {} epochs, {} seeds; samplers: {}\nreference point: accuracy 0, BOPs {reference_bops:.0} \
         (the space's largest); hypervolume normalised by 1 × {reference_bops:.0}",
        base.experiment.search.epochs,
        args.seeds,
        names.join("; ")
    );
    // Seed by seed, every entry in turn: a change in the machine's load
    // during the benchmark then falls on all entries alike.
    let jobs: Vec<(usize, u64)> = (1..=args.seeds).flat_map(|s| (0..entries.len()).map(move |e| (e, s))).collect();
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..args.workers.max(1) {
            scope.spawn(|| {
                let _core = crate::folds::CoreClaim::this_thread();
                while let Some(&(e, seed)) = jobs.get(next.fetch_add(1, Ordering::SeqCst)) {
                    match run_search(&base, &entries[e], seed, reference_bops, [accuracy, bops]) {
                        Ok(r) => rows.lock().unwrap_or_else(|p| p.into_inner()).extend(r),
                        Err(err) => *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err),
                    }
                }
            });
        }
    });
    if let Some(err) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err.context("a benchmark search failed"));
    }
    let mut rows = rows.into_inner().unwrap_or_else(|p| p.into_inner());
    rows.sort_by(|a, b| (&a.label, a.seed, a.trial).cmp(&(&b.label, b.seed, b.trial)));
    write_outputs(args, &entries, &rows, &what, reference_bops)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the CSV and the plot and prints the medians at 50, 100 and 150
/// trials and at each search's end.
fn write_outputs(
    args: &SearchBenchArgs,
    entries: &[Entry],
    rows: &[Row],
    what: &str,
    reference_bops: f64,
) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut csv = String::from("sampler,seed,trial,elapsed_s,hypervolume\n");
    for r in rows {
        writeln!(csv, "{},{},{},{:.3},{:.6}", r.label, r.seed, r.trial, r.elapsed_s, r.hypervolume)?;
    }
    let csv_path = args.out.join("search_quality.csv");
    snac_core::write_atomic(&csv_path, csv.as_bytes())?;
    let plot = QualityPlot {
        title: format!("{what}: hypervolume (reference accuracy 0, BOPs {reference_bops:.0})"),
        curves: curves(rows, entries),
    };
    let drawn = snac_report::plots::save(&plot, &args.out)?;
    println!("\n{:<24} {:>7} {:>22} {:>10}", "sampler", "trials", "median HV (min–max)", "median s");
    for entry in entries {
        let mut checkpoints: Vec<usize> = [50, 100, 150].into_iter().filter(|&t| t < entry.trials).collect();
        checkpoints.push(entry.trials);
        for t in checkpoints {
            let at: Vec<&Row> = rows.iter().filter(|r| r.label == entry.label && r.trial == t).collect();
            if at.is_empty() {
                continue;
            }
            let (median, lo, hi) = spread(at.iter().map(|r| r.hypervolume).collect());
            let (seconds, _, _) = spread(at.iter().map(|r| r.elapsed_s).collect());
            println!("{:<24} {t:>7} {median:>9.4} ({lo:.4}–{hi:.4}) {seconds:>10.1}", entry.label);
        }
    }
    println!(
        "\nwrote {} and {}",
        csv_path.display(),
        drawn.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_lists_parse_with_budgets_and_errors_name_the_value() {
        let with_pruner = parse_entries("tpe+median,nsga2:150+hyperband", 50).unwrap();
        assert_eq!(with_pruner[0].pruner, PrunerKind::Median);
        assert_eq!(
            (with_pruner[1].label.as_str(), with_pruner[1].pruner),
            ("nsga2(pop 50)@150+hyperband", PrunerKind::Hyperband)
        );
        assert!(
            parse_entries("tpe+medain", 50)
                .unwrap_err()
                .to_string()
                .contains("'medain' (in 'tpe+medain') is not a pruner")
        );
        let entries = parse_entries("auto, tpe,nsga2:150,nsga2:150:25,random", 50).unwrap();
        let labels: Vec<&str> = entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["auto", "tpe", "nsga2(pop 50)@150", "nsga2(pop 25)@150", "random"]);
        assert_eq!((entries[3].trials, entries[3].population), (150, Some(25)));
        let err = parse_entries("tpe,tpee", 50).unwrap_err().to_string();
        assert!(err.contains("'tpee'") && err.contains("auto, tpe, nsga2, random"), "{err}");
        let err = parse_entries("nsga2:x", 50).unwrap_err().to_string();
        assert!(err.contains("'x'") && err.contains("whole number"), "{err}");
        assert!(parse_entries(" , ", 50).is_err());
    }

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
