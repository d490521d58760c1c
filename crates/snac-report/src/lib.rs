//! snac-report: what people look at after (and during) a search. Plots of
//! every objective pair with its Pareto front, a 3-D view, the local search
//! and the training curves (PNG and SVG), a GIF of the front growing, and
//! one self-contained `report.html`.
//!
//! ```no_run
//! let results = snac_report::data::load_results_dir("results/digits".as_ref(), None)?;
//! snac_report::plots::write_plots(&results, "results/digits/plots".as_ref())?;
//! snac_report::html::write_report(&results, "results/digits/report.html".as_ref(), &Default::default())?;
//! # anyhow::Ok(())
//! ```

pub mod browser;
pub mod data;
pub mod html;
pub mod labels;
pub mod plots;
pub mod quality;
pub mod traces;

pub use data::{Results, load_csv, load_results_dir};
pub use plots::write_plots;
