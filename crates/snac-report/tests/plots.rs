//! The plots of a study read back from its SQLite storage and from CSVs:
//! the files exist with the right pixel size, and each plot drew the points
//! it should (checked against a brute-force Pareto front).

mod common;

use common::{COMPLETE, OBJECTIVES, brute_front, write_study};
use snac_report::data::{load_csv, load_results_dir};
use snac_report::plots::{self, ANIMATION_SIZE, Axis, CURVES_SIZE, HOLD_FRAMES, PAIR_SIZE, VIEW_3D_SIZE};
use std::path::Path;

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

fn svg_circles(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().matches("<circle").count()
}

#[test]
fn plots_of_a_study_show_every_completed_trial_and_the_right_front() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let results = load_results_dir(dir.path(), None).unwrap();
    let names: Vec<&str> = results.objectives.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, OBJECTIVES.map(|o| o.0));
    assert_eq!(results.trials.len(), 12);
    assert_eq!(results.complete().count(), 10);
    assert_eq!(results.local.len(), 12);

    let out = dir.path().join("plots");
    let set = plots::write_plots(&results, &out).unwrap();
    // 4 objectives: 6 pairs, the 3-D view, 2 local-search plots, training curves.
    assert_eq!(set.figures.len(), 10, "{:?}", set.figures.iter().map(|f| &f.stem).collect::<Vec<_>>());
    for file in set.files() {
        assert!(std::fs::metadata(&file).unwrap().len() > 1000, "{} is (nearly) empty", file.display());
    }

    let feasible: Vec<usize> = (0..COMPLETE.len()).filter(|&i| COMPLETE[i].4).collect();
    let value = |i: usize, objective: usize| {
        let t = COMPLETE[i];
        [t.0, t.1, t.2, t.3][objective]
    };
    for (x, &(x_name, x_max)) in OBJECTIVES.iter().enumerate() {
        for (y, &(y_name, y_max)) in OBJECTIVES.iter().enumerate().take(x) {
            let stem = format!("pareto_{y_name}_vs_{x_name}");
            let figure = set.figure(&stem).unwrap_or_else(|| panic!("no {stem}"));
            let points: Vec<(f64, f64)> = feasible.iter().map(|&i| (value(i, x), value(i, y))).collect();
            let expected_front = brute_front(&points, x_max, y_max).len();
            assert_eq!(figure.count("Pareto front"), expected_front, "{stem}");
            assert_eq!(figure.count("trials"), feasible.len() - expected_front, "{stem}");
            assert_eq!(figure.count("infeasible"), 2, "{stem}");
            assert_eq!(png_size(&figure.files[0]), PAIR_SIZE);
            // One <circle> per feasible trial (infeasible ones are crosses,
            // legend markers squares).
            assert_eq!(svg_circles(&figure.files[1]), feasible.len(), "{stem}");
        }
    }
    // The 4-D front, by brute force on every objective.
    let view = set.figure("pareto_3d").unwrap();
    let on_front = feasible
        .iter()
        .filter(|&&i| {
            !feasible.iter().any(|&j| {
                let better =
                    |k: usize| if OBJECTIVES[k].1 { value(j, k) > value(i, k) } else { value(j, k) < value(i, k) };
                let no_worse =
                    |k: usize| if OBJECTIVES[k].1 { value(j, k) >= value(i, k) } else { value(j, k) <= value(i, k) };
                j != i && (0..4).all(no_worse) && (0..4).any(better)
            })
        })
        .count();
    assert_eq!(view.count("Pareto front"), on_front);
    assert_eq!(view.count("trials") + view.count("Pareto front"), feasible.len());
    assert_eq!(png_size(&view.files[0]), VIEW_3D_SIZE);

    // Labels for people, BOPs on a log axis ticked at round values.
    let svg = std::fs::read_to_string(&set.figure("pareto_performance_metric_vs_bops").unwrap().files[1]).unwrap();
    for text in ["bit operations (BOPs) (log scale)", "validation accuracy vs bit operations (BOPs)", "\n1.00e6\n"] {
        assert!(svg.contains(text), "the BOPs plot's SVG has no {text:?}");
    }
    assert!(!svg.contains("performance_metric"), "a column name is shown instead of its label");
    let local = set.figure("local_accuracy_vs_effective_bops").unwrap();
    let svg = std::fs::read_to_string(&local.files[1]).unwrap();
    assert!(svg.contains("effective bit operations (BOPs) (log scale)"), "local search x axis");
    assert_eq!(local.series, vec![("<16,6>".to_string(), 4), ("<8,3>".to_string(), 4), ("<4,1>".to_string(), 4)]);
    let sparsity = set.figure("local_accuracy_vs_sparsity").unwrap();
    assert_eq!(sparsity.series.iter().map(|s| s.1).sum::<usize>(), 12);
    assert_eq!(svg_circles(&sparsity.files[1]), 12);

    // Training curves of the best feasible trial (index 4: accuracy 0.95).
    assert_eq!(results.best().unwrap().number, 4);
    let curves = set.figure("training_curves_best").unwrap();
    assert_eq!(curves.count("val accuracy"), 4);
    assert_eq!(curves.count("train loss"), 4);
    assert_eq!(png_size(&curves.files[0]), CURVES_SIZE);

    // The animation: one frame per completed trial, then the held last frame.
    let animation = set.animation.as_ref().unwrap();
    assert_eq!(animation.frames.len(), 10 + HOLD_FRAMES);
    assert_eq!(animation.frames[..3], [1, 2, 3]);
    let mut decoder = gif::DecodeOptions::new();
    decoder.set_color_output(gif::ColorOutput::RGBA);
    let mut reader = decoder.read_info(std::fs::File::open(&animation.path).unwrap()).unwrap();
    assert_eq!((reader.width() as u32, reader.height() as u32), ANIMATION_SIZE);
    let mut frames = 0;
    while reader.read_next_frame().unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, animation.frames.len());
    // The animation's axes are the plots': BOPs on a log axis, labelled for people.
    assert_eq!(animation.axes[0].label(), "validation accuracy");
    assert_eq!(animation.axes[1].label(), "bit operations (BOPs) (log scale)");
    // The last frame's front is the final 2-D front of the first two objectives.
    let points: Vec<(f64, f64)> = feasible.iter().map(|&i| (value(i, 0), value(i, 1))).collect();
    assert_eq!(*animation.front_sizes.last().unwrap(), brute_front(&points, true, false).len());
}

#[test]
fn snac_pack_csv_plots_with_failures_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("mlp_search_results.csv");
    std::fs::write(
        &csv,
        "trial,performance_metric,bops,params,yaml_path,avg_resource,clock_cycles,run_timestamp\n\
         0,0.8,100000,100,a.yaml,2.0,20,2025-01-01 10:00:00\n\
         1,0.9,2000000,1000,b.yaml,5.0,30,2025-01-01 10:01:00\n\
         2,0,1000000000000,100,c.yaml,100,1000000000,2025-01-01 10:02:00\n\
         3,0.7,500000,300,d.yaml,1.0,40,2025-01-01 10:03:00\n",
    )
    .unwrap();
    let results = load_csv(&csv, None).unwrap();
    let names: Vec<&str> = results.objectives.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["performance_metric", "bops", "avg_resource", "clock_cycles"]);
    assert_eq!(results.complete().count(), 3, "the placeholder row of a failed trial is left out");
    assert!(results.trials[2].fail_reason.as_deref().unwrap().contains("placeholder"));
    let set = plots::write_plots(&results, &dir.path().join("plots")).unwrap();
    let pair = set.figure("pareto_performance_metric_vs_bops").unwrap();
    assert_eq!(pair.count("trials") + pair.count("Pareto front"), 3);
    assert_eq!(pair.count("Pareto front"), 2); // 0.8 @ 1e5 and 0.9 @ 2e6; 0.7 @ 5e5 is dominated
    assert!(set.figure("pareto_3d").is_some());
    assert!(set.figure("training_curves_best").is_none(), "a CSV has no training history");
}

#[test]
fn our_csv_with_states_and_feasibility() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("mlp_search_results.csv");
    std::fs::write(
        &csv,
        "trial,performance_metric,bops,params,yaml_path,run_timestamp,state,duration_s,seed,fail_reason,feasible\n\
         1,0.88,5729088.0,5386,t1.yaml,2026-11-28T18:03:02+00:00,COMPLETE,0.413,5,,true\n\
         0,0.58,13584640.0,12682,t0.yaml,2026-11-28T18:03:03+00:00,COMPLETE,0.655,6,,false\n\
         2,,,,,2026-11-28T18:03:04+00:00,FAIL,0.1,7,NaN loss,\n",
    )
    .unwrap();
    let results = load_csv(&csv, None).unwrap();
    assert_eq!(results.objectives.len(), 2, "no hardware columns: accuracy and BOPs");
    assert_eq!(results.trials.iter().map(|t| t.number).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(results.trials[2].state, "FAIL");
    assert_eq!(results.trials[0].feasible, Some(false));
    let set = plots::write_plots(&results, &dir.path().join("plots")).unwrap();
    let pair = set.figure("pareto_performance_metric_vs_bops").unwrap();
    assert_eq!((pair.count("Pareto front"), pair.count("trials"), pair.count("infeasible")), (1, 0, 1));
    assert!(set.figure("pareto_3d").is_none());

    // Chosen objectives must be columns of the file.
    let err = load_csv(&csv, Some(&["performance_metric".into(), "avg_resource".into()])).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("avg_resource") && message.contains("mlp_search_results.csv"), "{message}");
}

#[test]
fn a_csv_without_a_needed_column_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("results.csv");
    std::fs::write(&csv, "trial,accuracy,bops\n0,0.9,100\n").unwrap();
    let message = format!("{:#}", load_csv(&csv, None).unwrap_err());
    assert!(message.contains("results.csv"), "{message}");
    assert!(message.contains("'performance_metric'"), "{message}");
    assert!(message.contains("trial, performance_metric, bops"), "{message}");

    std::fs::write(&csv, "trial,performance_metric,bops\n0,high,100\n").unwrap();
    let message = format!("{:#}", load_csv(&csv, None).unwrap_err());
    assert!(message.contains("line 2") && message.contains("'high'"), "{message}");
}

/// The values of an axis's labelled ticks.
fn tick_values(axis: &Axis) -> Vec<f64> {
    axis.ticks().0.iter().map(|t| if axis.log { 10f64.powf(*t) } else { *t }).collect()
}

/// Whether `value` is 1, 2 or 5 times a power of ten (or any digit with `digits`).
fn is_round(value: f64, digits: bool) -> bool {
    let mantissa = value / 10f64.powf(value.log10().floor());
    let rounded = mantissa.round();
    (mantissa - rounded).abs() < 1e-6 && (digits || [1.0, 2.0, 5.0, 10.0].contains(&rounded))
}

#[test]
fn costs_get_log_axes_with_round_ticks_and_accuracy_stays_linear() {
    // BOPs over two decades: a log axis ticked at powers of ten.
    let bops = Axis::fit("bops", vec![1.2e5, 3e5, 2.5e7]);
    assert!(bops.log);
    assert_eq!(bops.label(), "bit operations (BOPs) (log scale)");
    let ticks = tick_values(&bops);
    assert!(ticks.len() >= 3 && ticks.iter().all(|v| is_round(*v, false)), "{ticks:?}");
    // Light grid lines at the other digits of each decade, never on a tick.
    let (bold, light) = bops.ticks();
    assert!(light.len() > bold.len() && light.iter().all(|l| !bold.contains(l)));
    // BOPs within one decade: still log, ticks at round digits.
    let narrow = Axis::fit("bops", vec![2e5, 6e5]);
    assert!(narrow.log);
    let ticks = tick_values(&narrow);
    assert!(ticks.len() >= 3 && ticks.iter().all(|v| is_round(*v, true)), "{ticks:?}");
    // Other costs: log only beyond a decade.
    assert!(!Axis::fit("params", vec![100.0, 900.0]).log);
    assert!(Axis::fit("params", vec![100.0, 1100.0]).log);
    assert!(!Axis::fit("bops", vec![0.0, 1e6]).log, "zero cannot sit on a log axis");
    // Accuracy: linear, whatever its span, ticked at round steps.
    let accuracy = Axis::fit("performance_metric", vec![0.05, 0.99]);
    assert!(!accuracy.log);
    assert_eq!(accuracy.label(), "validation accuracy");
    let ticks = tick_values(&accuracy);
    assert!(ticks.len() >= 4 && ticks.iter().all(|v| accuracy.range.contains(v)), "{ticks:?}");
    // Evenly spaced by a round step.
    let step = ticks[1] - ticks[0];
    assert!(is_round(step, false), "{ticks:?}");
    assert!(ticks.windows(2).all(|w| (w[1] - w[0] - step).abs() < 1e-9), "{ticks:?}");
}
