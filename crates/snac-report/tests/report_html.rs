//! `report.html` in headless Chromium: the script runs without errors, the
//! Pareto scatter holds one point per feasible trial, and a screenshot is
//! not blank.

mod common;

use common::{COMPLETE, write_study};
use snac_report::browser;
use snac_report::data::load_results_dir;
use snac_report::html::{ReportOptions, render, write_report};
use std::collections::HashSet;

#[test]
fn report_is_self_contained_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let results = load_results_dir(dir.path(), None).unwrap();
    let page = render(&results, &ReportOptions::default()).unwrap();
    // Nothing fetched from anywhere.
    for needle in ["src=\"http", "href=\"http", "<link ", "src=\"//", "@import"] {
        assert!(!page.contains(needle), "report refers to an outside resource: {needle}");
    }
    // Every trial has a table row; the best model's estimate is there.
    for number in 0..12 {
        assert!(page.contains(&format!("id=\"trial-{number}\"")), "no row for trial {number}");
    }
    assert!(page.contains("Estimated FPGA resources"));
    assert!(page.contains("measured error") && !page.contains("Does not fit"), "the small best model fits");
    assert!(page.contains("training diverged: NaN loss"));
    assert!(page.contains("id=\"local-table\""));
}

#[test]
fn a_best_model_over_the_board_is_said_not_to_fit() {
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let mut results = load_results_dir(dir.path(), None).unwrap();
    let best = results.best().unwrap().number;
    let record = results.trials.iter_mut().find(|t| t.number == best).unwrap();
    let estimate = [("lut", 686_332.0), ("lut_pct", 250.4), ("ff", 1.0), ("ff_pct", 0.1), ("dsp_pct", 120.0)];
    record.estimate = Some(estimate.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    let page = render(&results, &ReportOptions::default()).unwrap();
    assert!(page.contains("Does not fit the board") && page.contains("LUT 250 %, DSP 120 %"), "no verdict");
}

#[test]
fn report_opens_in_chromium_without_errors_and_looks_like_something() {
    let Some(chromium) = browser::find_chromium() else {
        snac_core::missing_test_dependency("no Chromium ($SNAC_CHROMIUM or chromium on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_study(dir.path());
    let results = load_results_dir(dir.path(), None).unwrap();
    let html = dir.path().join("report.html");
    write_report(&results, &html, &ReportOptions::default()).unwrap();

    let check = browser::check_page(&chromium, &html).unwrap();
    assert_eq!(check.js_errors(), "", "the page's script failed");
    assert!(check.console.is_empty(), "console messages: {:#?}", check.console);
    assert!(check.ready(), "the report's script did not finish");
    let feasible = COMPLETE.iter().filter(|t| t.4).count();
    assert_eq!(check.scatter_points(), feasible, "one scatter point per feasible trial");
    assert!(check.dom.contains("id=\"pareto-plot\""));
    assert!(check.dom.contains("class=\"pt front\""), "the front is highlighted");
    // Axes for people: BOPs (x by default) on a log axis ticked at powers of
    // ten, accuracy (y) linear.
    assert!(check.dom.contains(">bit operations (BOPs) (log scale)<"), "x axis label");
    assert!(check.dom.contains(">validation accuracy<"), "y axis label");
    for tick in [">1.00e+5<", ">1.00e+6<", ">1.00e+7<"] {
        assert!(check.dom.contains(tick), "no BOPs tick {tick}");
    }

    // Hovering over a point shows its trial; another y axis redraws all points.
    let interactive = browser::self_test(&chromium, &html).unwrap();
    assert_eq!(interactive.js_errors(), "");
    assert!(interactive.ready());
    let tooltip = interactive.attribute("data-selftest-tooltip").unwrap();
    assert!(tooltip.starts_with("trial ") && tooltip.contains("relu → D10 softmax"), "tooltip: {tooltip:?}");
    assert!(tooltip.contains("validation accuracy") && tooltip.contains("width_0="), "tooltip: {tooltip:?}");
    assert_eq!(interactive.attribute("data-selftest-axis").as_deref(), Some("params"));
    assert_eq!(interactive.attribute("data-selftest-points").as_deref(), Some("10"), "8 feasible + 2 infeasible");

    let shot = dir.path().join("report.png");
    browser::screenshot(&chromium, &html, &shot, (1280, 1600)).unwrap();
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1280, 1600));
    let bytes_per_pixel = info.line_size / info.width as usize;
    let colours: HashSet<&[u8]> = pixels[..info.buffer_size()].chunks(bytes_per_pixel).collect();
    let non_white =
        pixels[..info.buffer_size()].chunks(bytes_per_pixel).filter(|p| p.iter().take(3).any(|&c| c < 200)).count();
    assert!(colours.len() > 20, "screenshot has only {} colours", colours.len());
    assert!(non_white > 5000, "screenshot is nearly blank ({non_white} dark pixels)");

    // The check can fail: a page whose script throws is caught.
    let broken = dir.path().join("broken.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("  draw();\n"));
    std::fs::write(&broken, page.replacen("  draw();\n", "  draw();\n  undefinedFunction();\n", 1)).unwrap();
    let check = browser::check_page(&chromium, &broken).unwrap();
    assert!(check.js_errors().contains("undefinedFunction"), "error not collected: {:?}", check.js_errors());
    assert!(!check.ready());
}

#[test]
fn report_of_a_study_without_completed_trials_opens_cleanly() {
    let Some(chromium) = browser::find_chromium() else {
        snac_core::missing_test_dependency("no Chromium ($SNAC_CHROMIUM or chromium on PATH)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("mlp_search_results.csv");
    std::fs::write(
        &csv,
        "trial,performance_metric,bops,params,yaml_path,run_timestamp,state,duration_s,seed,fail_reason\n\
         0,,,,,2026-11-28T18:03:04+00:00,FAIL,0.1,7,NaN loss\n",
    )
    .unwrap();
    let results = snac_report::load_csv(&csv, None).unwrap();
    let html = dir.path().join("report.html");
    write_report(&results, &html, &ReportOptions { running: true }).unwrap();
    let check = browser::check_page(&chromium, &html).unwrap();
    assert_eq!(check.js_errors(), "");
    assert!(check.console.is_empty(), "console messages: {:#?}", check.console);
    assert!(check.ready());
    assert_eq!(check.scatter_points(), 0);
    assert!(check.dom.contains("NaN loss") && check.dom.contains("still running"));
}
