//! Static plots of a search with plotters, each written as PNG and SVG: every
//! pair of objectives with its Pareto front, a 3-D view, the local search, and
//! the training curves of the best trial; plus a GIF of the front growing.
//!
//! Every figure is built from its data first ([`PairPlot::new`] etc.) and
//! drawn second, and [`Drawn`] reports how many points each series drew, so
//! tests check the data behind a plot rather than its pixels. Axes carry
//! labels for people and costs their log scale ([`crate::labels`]).

use crate::data::{Epoch, LocalRow, Results, TrialRecord};
use crate::labels;
use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use snac_core::search::Direction;
use snac_core::search::pareto::fast_non_dominated_sort;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// DejaVu Sans cut down to Latin-1 and a few symbols (assets/, with its
/// licence): text looks the same on every machine and needs no system font.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
pub(crate) const FONT_FAMILY: &str = "sans-serif";

/// Size of the pair plots and local-search plots, in pixels.
pub const PAIR_SIZE: (u32, u32) = (900, 650);
/// Size of the 3-D view.
pub const VIEW_3D_SIZE: (u32, u32) = (1000, 800);
/// Size of the training-curve figure (loss and accuracy side by side).
pub const CURVES_SIZE: (u32, u32) = (1200, 500);
/// Size of the animation's frames.
pub const ANIMATION_SIZE: (u32, u32) = (720, 520);

const TRIAL_COLOUR: RGBColor = RGBColor(70, 110, 190);
const FRONT_COLOUR: RGBColor = RGBColor(215, 40, 40);
const INFEASIBLE_COLOUR: RGBColor = RGBColor(240, 140, 0);

/// Registers the embedded font with plotters (once per process).
pub(crate) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(anyhow!("the embedded font (assets/DejaVuSans-subset.ttf) could not be loaded")) }
}

pub(crate) fn drawing_error(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing failed: {err}")
}

/// One written figure: its files, pixel size, and the points per series.
#[derive(Clone, Debug)]
pub struct Drawn {
    pub stem: String,
    pub files: Vec<PathBuf>,
    pub size: (u32, u32),
    /// (series label, number of points drawn).
    pub series: Vec<(String, usize)>,
}

impl Drawn {
    /// Points drawn in the series of that label (0 when there is none).
    pub fn count(&self, label: &str) -> usize {
        self.series.iter().filter(|(l, _)| l == label).map(|(_, n)| n).sum()
    }
}

/// A figure that can be drawn on any plotters backend.
pub trait Figure {
    /// File name without extension.
    fn stem(&self) -> String;
    fn size(&self) -> (u32, u32);
    /// (series label, number of points) of what [`Figure::draw`] draws.
    fn series(&self) -> Vec<(String, usize)>;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `figure` into `{dir}/{stem}.png` and `.svg`, each written atomically.
pub fn save<F: Figure>(figure: &F, dir: &Path) -> Result<Drawn> {
    ensure_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = figure.stem();
    let png = dir.join(format!("{stem}.png"));
    // plotters picks the encoder from the extension, so the temp file keeps it.
    let tmp = dir.join(format!(".{stem}.tmp{}.png", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, figure.size()).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        figure.draw(&root)?;
        root.present().map_err(drawing_error).with_context(|| format!("writing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &png).with_context(|| format!("renaming {} to {}", tmp.display(), png.display()))?;
    let svg = dir.join(format!("{stem}.svg"));
    snac_core::write_atomic(&svg, svg_string(figure)?.as_bytes())?;
    Ok(Drawn { stem, files: vec![png, svg], size: figure.size(), series: figure.series() })
}

/// The figure as an SVG document (for inlining into the report).
pub fn svg_string<F: Figure>(figure: &F) -> Result<String> {
    ensure_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, figure.size()).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        figure.draw(&root)?;
        root.present().map_err(drawing_error)?;
    }
    Ok(svg)
}

/// An axis: a metric, drawn on a log scale when it is a cost spanning
/// orders of magnitude ([`labels::scale`]).
#[derive(Clone, Debug)]
pub struct Axis {
    /// The metric's name (`bops`); [`labels::label`] gives what is shown.
    pub name: String,
    pub log: bool,
    /// Range in drawing units (log10 of the value on a log axis).
    pub range: std::ops::Range<f64>,
}

impl Axis {
    /// Fits an axis to the values it will show.
    pub fn fit(name: &str, values: impl IntoIterator<Item = f64> + Clone) -> Axis {
        let finite = || values.clone().into_iter().filter(|v| v.is_finite());
        let (min, max) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let log = min <= max && labels::scale(name).is_log(min, max);
        let (lo, hi) = if min > max {
            (0.0, 1.0)
        } else if log {
            (min.log10(), max.log10())
        } else {
            (min, max)
        };
        let pad = if hi > lo { (hi - lo) * 0.06 } else { lo.abs().max(1.0) * 0.1 };
        Axis { name: name.to_string(), log, range: (lo - pad)..(hi + pad) }
    }

    /// A value in drawing units (`None` when the axis cannot show it).
    pub fn position(&self, value: f64) -> Option<f64> {
        match self.log {
            _ if !value.is_finite() => None,
            true if value <= 0.0 => None,
            true => Some(value.log10()),
            false => Some(value),
        }
    }

    fn tick(&self, position: f64) -> String {
        let value = if self.log { 10f64.powf(position) } else { position };
        format_number(value)
    }

    /// What the axis is called on the figure.
    pub fn label(&self) -> String {
        let label = labels::label(&self.name);
        if self.log { format!("{label} (log scale)") } else { label.to_string() }
    }

    /// Tick positions in drawing units, labelled and gridded (bold), and the
    /// lighter grid lines between them. A log axis ticks at round values
    /// (1, 2, 5 × a power of ten, or every power when it spans many
    /// decades), with a light line at each other digit of each decade.
    pub fn ticks(&self) -> (Vec<f64>, Vec<f64>) {
        let (lo, hi) = (self.range.start, self.range.end);
        if !self.log {
            let step = nice_step(hi - lo);
            return (multiples(lo, hi, step), multiples(lo, hi, step / 5.0));
        }
        let all_digits = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let decades: Vec<f64> = multiples(lo, hi, 1.0);
        let bold = if decades.len() >= 3 {
            // Every power of ten, or every k-th when there are many.
            let every = decades.len().div_ceil(8);
            decades.iter().step_by(every).copied().collect()
        } else {
            match [&[1.0, 2.0, 5.0][..], &all_digits[..]].iter().map(|m| log_ticks(lo, hi, m)).find(|t| t.len() >= 3) {
                Some(ticks) => ticks,
                // Less than a decade: round steps of the values themselves.
                None => {
                    let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
                    multiples(a, b, nice_step(b - a)).into_iter().filter(|v| *v > 0.0).map(f64::log10).collect()
                }
            }
        };
        let light = log_ticks(lo, hi, &all_digits).into_iter().filter(|t| !bold.contains(t)).collect();
        (bold, light)
    }

    /// The axis as plotters' coordinate, with [`Axis::ticks`] as its key points.
    pub(crate) fn coord(&self) -> Ticked {
        let (bold, light) = self.ticks();
        Ticked { inner: self.range.clone().into(), bold, light }
    }
}

/// Plotters' f64 coordinate with an [`Axis`]'s own ticks and grid lines.
#[derive(Clone)]
pub(crate) struct Ticked {
    inner: RangedCoordf64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { self.light.clone() } else { self.bold.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for Ticked {
    /// Only for a chart without its own label formatter (every chart here sets one).
    fn format(value: &f64) -> String {
        format_number(*value)
    }
}

/// A round step (1, 2 or 5 × a power of ten) giving four to eight ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let raw = if span > 0.0 && span.is_finite() { span / 6.0 } else { 1.0 };
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|step| *step >= raw).unwrap_or(10.0 * power)
}

/// The multiples of `step` from `lo` to `hi`.
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if !(step > 0.0 && lo.is_finite() && hi.is_finite()) || (hi - lo) / step > 1000.0 {
        return Vec::new();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| if k == 0 { 0.0 } else { k as f64 * step }).collect()
}

/// log10 of `m × 10^e` for each mantissa `m` and every decade `e` that puts
/// it inside `lo..hi` (log10 units).
fn log_ticks(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let mut ticks = Vec::new();
    for decade in (lo.floor() as i64)..=(hi.ceil() as i64) {
        for m in mantissas {
            let t = decade as f64 + m.log10();
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
    }
    ticks
}

/// Caption size and label-area sizes of a chart, in pixels.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    caption: u32,
    x_area: u32,
    y_area: u32,
}

/// A chart that fills a figure.
pub(crate) const LARGE: Frame = Frame { caption: 22, x_area: 50, y_area: 80 };
/// A chart in one panel of a figure.
pub(crate) const SMALL: Frame = Frame { caption: 20, x_area: 45, y_area: 70 };

pub(crate) type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<Ticked, Ticked>>;

/// A 2-D chart on `area` with `title`, the axes' ranges, and a mesh labelled
/// with the axes' names and ticks.
pub(crate) fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    frame: Frame,
    x: &Axis,
    y: &Axis,
) -> Result<Chart2d<'a, DB>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT_FAMILY, frame.caption))
        .margin(15)
        .x_label_area_size(frame.x_area)
        .y_label_area_size(frame.y_area)
        .build_cartesian_2d(x.coord(), y.coord())
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .x_desc(x.label())
        .y_desc(y.label())
        .x_label_formatter(&|v| x.tick(*v))
        .y_label_formatter(&|v| y.tick(*v))
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 16))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(drawing_error)?;
    Ok(chart)
}

/// Width of the legend strip right of a 2-D chart, in pixels.
const LEGEND_WIDTH: u32 = 170;

/// How a legend entry is marked.
#[derive(Clone, Copy)]
enum Marker {
    Square,
    Cross,
}

/// Splits off the legend strip on the right: (chart area, legend area).
fn with_legend<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let width = root.dim_in_pixel().0;
    root.split_horizontally(width.saturating_sub(LEGEND_WIDTH))
}

/// A legend beside the chart (never over its points).
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBAColor, Marker)],
) -> Result<()> {
    for (i, (label, colour, marker)) in entries.iter().enumerate() {
        let y = 60 + i as i32 * 24;
        match marker {
            Marker::Square => area.draw(&Rectangle::new([(4, y - 5), (14, y + 5)], colour.filled())),
            Marker::Cross => area.draw(&Cross::new((9, y), 5, colour.stroke_width(2))),
        }
        .map_err(drawing_error)?;
        area.draw(&Text::new(label.clone(), (22, y - 8), (FONT_FAMILY, 14))).map_err(drawing_error)?;
    }
    Ok(())
}

/// Short human form of a number for ticks and tooltips.
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.2e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Indices of the first non-dominated front of `points` (feasible only).
pub fn front_indices(points: &[Vec<f64>], directions: &[Direction]) -> Vec<usize> {
    if points.is_empty() {
        return Vec::new();
    }
    fast_non_dominated_sort(points, None, directions).into_iter().next().unwrap_or_default()
}

/// A point of a scatter: drawing coordinates and the trial number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub trial: u64,
}

/// Two objectives against each other: completed trials, the 2-D Pareto front
/// of the feasible ones (highlighted and joined), infeasible trials marked.
#[derive(Clone, Debug)]
pub struct PairPlot {
    pub x: Axis,
    pub y: Axis,
    pub title: String,
    /// Feasible trials that are not on the front.
    pub dominated: Vec<Point>,
    /// The front, sorted along x.
    pub front: Vec<Point>,
    pub infeasible: Vec<Point>,
    stem: String,
    size: (u32, u32),
}

impl PairPlot {
    /// The pair `(x, y)` of metrics over the completed trials of `results`.
    pub fn new(results: &Results, x: &str, y: &str) -> PairPlot {
        let trials: Vec<&TrialRecord> = results.complete().collect();
        let x_axis = Axis::fit(x, trials.iter().map(|t| t.metric(x)).collect::<Vec<_>>());
        let y_axis = Axis::fit(y, trials.iter().map(|t| t.metric(y)).collect::<Vec<_>>());
        let directions = [Direction::from_maximize(results.maximize(x)), Direction::from_maximize(results.maximize(y))];
        let title = format!("{} vs {} ({} completed trials)", labels::label(y), labels::label(x), trials.len());
        PairPlot::from_trials(&trials, x_axis, y_axis, directions, title, format!("pareto_{y}_vs_{x}"), PAIR_SIZE)
    }

    /// The plot of `trials` on given axes (the animation keeps its axes fixed).
    pub fn from_trials(
        trials: &[&TrialRecord],
        x: Axis,
        y: Axis,
        directions: [Direction; 2],
        title: String,
        stem: String,
        size: (u32, u32),
    ) -> PairPlot {
        let mut feasible = Vec::new();
        let mut infeasible = Vec::new();
        for trial in trials.iter().filter(|t| t.is_complete()) {
            let (Some(px), Some(py)) = (x.position(trial.metric(&x.name)), y.position(trial.metric(&y.name))) else {
                continue;
            };
            let point = Point { x: px, y: py, trial: trial.number };
            if trial.is_feasible() { feasible.push(point) } else { infeasible.push(point) }
        }
        // Dominance on drawing units equals dominance on values (log10 is monotone).
        let values: Vec<Vec<f64>> = feasible.iter().map(|p| vec![p.x, p.y]).collect();
        let on_front = front_indices(&values, &directions);
        let mut front: Vec<Point> = on_front.iter().map(|&i| feasible[i]).collect();
        front.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
        let dominated = feasible.iter().enumerate().filter(|(i, _)| !on_front.contains(i)).map(|(_, p)| *p).collect();
        PairPlot { x, y, title, dominated, front, infeasible, stem, size }
    }
}

impl Figure for PairPlot {
    fn stem(&self) -> String {
        self.stem.clone()
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn series(&self) -> Vec<(String, usize)> {
        vec![
            ("trials".into(), self.dominated.len()),
            ("Pareto front".into(), self.front.len()),
            ("infeasible".into(), self.infeasible.len()),
        ]
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (plot, legend) = with_legend(root);
        let mut chart = chart(&plot, &self.title, LARGE, &self.x, &self.y)?;
        // Legend markers are squares, so an SVG holds exactly one <circle>
        // per feasible trial.
        chart
            .draw_series(self.dominated.iter().map(|p| Circle::new((p.x, p.y), 4, TRIAL_COLOUR.mix(0.7).filled())))
            .map_err(drawing_error)?;
        chart
            .draw_series(LineSeries::new(self.front.iter().map(|p| (p.x, p.y)), FRONT_COLOUR.stroke_width(2)))
            .map_err(drawing_error)?;
        chart
            .draw_series(self.front.iter().map(|p| Circle::new((p.x, p.y), 6, FRONT_COLOUR.filled())))
            .map_err(drawing_error)?;
        chart
            .draw_series(self.infeasible.iter().map(|p| Cross::new((p.x, p.y), 5, INFEASIBLE_COLOUR.stroke_width(2))))
            .map_err(drawing_error)?;
        let mut entries = vec![
            (format!("trials ({})", self.dominated.len()), TRIAL_COLOUR.to_rgba(), Marker::Square),
            (format!("Pareto front ({})", self.front.len()), FRONT_COLOUR.to_rgba(), Marker::Square),
        ];
        if !self.infeasible.is_empty() {
            entries.push((
                format!("infeasible ({})", self.infeasible.len()),
                INFEASIBLE_COLOUR.to_rgba(),
                Marker::Cross,
            ));
        }
        draw_legend(&legend, &entries)
    }
}

/// Three objectives in 3-D (x, vertical y, z), coloured by a fourth when
/// there is one; the N-objective Pareto front drawn larger, in red.
#[derive(Clone, Debug)]
pub struct View3d {
    pub axes: [Axis; 3],
    pub colour_by: Option<(String, f64, f64)>,
    /// (x, y, z, colour in [0, 1], trial); feasible, off the front.
    pub dominated: Vec<([f64; 3], f64, u64)>,
    pub front: Vec<([f64; 3], f64, u64)>,
    pub infeasible: Vec<([f64; 3], f64, u64)>,
}

impl View3d {
    /// `None` with fewer than three objectives.
    pub fn new(results: &Results) -> Option<View3d> {
        let objectives = &results.objectives;
        if objectives.len() < 3 {
            return None;
        }
        let trials: Vec<&TrialRecord> = results.complete().collect();
        // Accuracy (the first objective) stands up; the next two lie flat.
        let order = [1, 0, 2];
        let axes = order.map(|i| {
            Axis::fit(&objectives[i].name, trials.iter().map(|t| t.metric(&objectives[i].name)).collect::<Vec<_>>())
        });
        let colour_by = objectives.get(3).map(|o| {
            let values = trials.iter().map(|t| t.metric(&o.name)).filter(|v| v.is_finite());
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            (o.name.clone(), lo, hi)
        });
        let directions: Vec<Direction> = objectives.iter().map(|o| o.direction()).collect();
        let mut feasible = Vec::new();
        let mut infeasible = Vec::new();
        for trial in trials {
            let Some(position) = axes.iter().map(|a| a.position(trial.metric(&a.name))).collect::<Option<Vec<f64>>>()
            else {
                continue;
            };
            let colour = match &colour_by {
                Some((name, lo, hi)) if hi > lo => ((trial.metric(name) - lo) / (hi - lo)).clamp(0.0, 1.0),
                _ => 0.5,
            };
            let values: Vec<f64> = objectives.iter().map(|o| trial.metric(&o.name)).collect();
            let entry = ([position[0], position[1], position[2]], colour, trial.number, values);
            if trial.is_feasible() { feasible.push(entry) } else { infeasible.push(entry) }
        }
        let values: Vec<Vec<f64>> = feasible.iter().map(|e| e.3.clone()).collect();
        let on_front = front_indices(&values, &directions);
        let strip = |e: &([f64; 3], f64, u64, Vec<f64>)| (e.0, e.1, e.2);
        Some(View3d {
            dominated: feasible
                .iter()
                .enumerate()
                .filter(|(i, _)| !on_front.contains(i))
                .map(|(_, e)| strip(e))
                .collect(),
            front: on_front.iter().map(|&i| strip(&feasible[i])).collect(),
            infeasible: infeasible.iter().map(strip).collect(),
            axes,
            colour_by,
        })
    }
}

/// A viridis-like ramp for `t` in [0, 1].
fn heat(t: f64) -> RGBColor {
    let stops =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let scaled = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (scaled.floor() as usize).min(stops.len() - 2);
    let f = scaled - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(stops[i].0, stops[i + 1].0), mix(stops[i].1, stops[i + 1].1), mix(stops[i].2, stops[i + 1].2))
}

impl Figure for View3d {
    fn stem(&self) -> String {
        "pareto_3d".into()
    }

    fn size(&self) -> (u32, u32) {
        VIEW_3D_SIZE
    }

    fn series(&self) -> Vec<(String, usize)> {
        vec![
            ("trials".into(), self.dominated.len()),
            ("Pareto front".into(), self.front.len()),
            ("infeasible".into(), self.infeasible.len()),
        ]
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let [x, y, z] = &self.axes;
        let mut caption = format!("x: {} · y: {} · z: {}", x.label(), y.label(), z.label());
        if let Some((name, lo, hi)) = &self.colour_by {
            caption.push_str(&format!(
                " · colour: {} {} (dark) to {} (yellow)",
                labels::label(name),
                format_number(*lo),
                format_number(*hi)
            ));
        }
        let (top, body) = root.split_vertically(40);
        top.draw(&Text::new(caption, (15, 12), (FONT_FAMILY, 16))).map_err(drawing_error)?;
        let mut chart = ChartBuilder::on(&body)
            .caption(format!("Pareto front in 3-D ({} on the front, red)", self.front.len()), (FONT_FAMILY, 20))
            .margin(20)
            .build_cartesian_3d(x.coord(), y.coord(), z.coord())
            .map_err(drawing_error)?;
        chart.with_projection(|mut projection| {
            projection.pitch = 0.45;
            projection.yaw = 0.65;
            projection.scale = 0.8;
            projection.into_matrix()
        });
        chart
            .configure_axes()
            .light_grid_style(BLACK.mix(0.1))
            .max_light_lines(3)
            .label_style((FONT_FAMILY, 12))
            .x_formatter(&|v| x.tick(*v))
            .y_formatter(&|v| y.tick(*v))
            .z_formatter(&|v| z.tick(*v))
            .draw()
            .map_err(drawing_error)?;
        chart
            .draw_series(self.dominated.iter().map(|(p, c, _)| Circle::new((p[0], p[1], p[2]), 4, heat(*c).filled())))
            .map_err(drawing_error)?;
        chart
            .draw_series(
                self.infeasible
                    .iter()
                    .map(|(p, _, _)| Cross::new((p[0], p[1], p[2]), 5, INFEASIBLE_COLOUR.stroke_width(2))),
            )
            .map_err(drawing_error)?;
        chart
            .draw_series(self.front.iter().map(|(p, _, _)| Circle::new((p[0], p[1], p[2]), 7, FRONT_COLOUR.filled())))
            .map_err(drawing_error)?;
        Ok(())
    }
}

/// What the local-search plot puts on its x axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LocalAxis {
    EffectiveBops,
    Sparsity,
    /// The estimated LUTs (the log's `lut` column): uniform pairs against
    /// per-layer precision.
    Lut,
}

impl LocalAxis {
    /// Every local-search plot, in the report's order.
    pub const ALL: [LocalAxis; 3] = [LocalAxis::EffectiveBops, LocalAxis::Sparsity, LocalAxis::Lut];
}

/// Local search: accuracy against effective BOPs, sparsity or estimated
/// LUTs, one line per precision in pruning order.
#[derive(Clone, Debug)]
pub struct LocalPlot {
    pub kind: LocalAxis,
    pub x: Axis,
    pub y: Axis,
    /// (precision, points in iteration order).
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

impl LocalPlot {
    /// `None` when no row has the x value (the log is empty, or has no estimate).
    pub fn new(rows: &[LocalRow], kind: LocalAxis) -> Option<LocalPlot> {
        let x_of = |r: &LocalRow| match kind {
            LocalAxis::EffectiveBops => Some(r.effective_bops),
            LocalAxis::Sparsity => Some(r.sparsity),
            LocalAxis::Lut => r.extra.get("lut").copied().filter(|v| v.is_finite()),
        };
        let rows: Vec<&LocalRow> = rows.iter().filter(|r| x_of(r).is_some()).collect();
        if rows.is_empty() {
            return None;
        }
        let x_of = |r: &LocalRow| x_of(r).expect("filtered above");
        let x_name = match kind {
            LocalAxis::EffectiveBops => "effective_bops",
            LocalAxis::Sparsity => "sparsity",
            LocalAxis::Lut => "lut",
        };
        let x = Axis::fit(x_name, rows.iter().map(|r| x_of(r)).collect::<Vec<_>>());
        let y = Axis::fit("accuracy", rows.iter().map(|r| r.accuracy).collect::<Vec<_>>());
        // (precision, [(iteration, x, y)]) in the log's order of precisions.
        type Line = (String, Vec<(u64, f64, f64)>);
        let mut lines: Vec<Line> = Vec::new();
        for (index, &row) in rows.iter().enumerate() {
            let (Some(px), Some(py)) = (x.position(x_of(row)), y.position(row.accuracy)) else { continue };
            let order = row.iteration.unwrap_or(index as u64);
            match lines.iter_mut().find(|(p, _)| *p == row.precision) {
                Some((_, points)) => points.push((order, px, py)),
                None => lines.push((row.precision.clone(), vec![(order, px, py)])),
            }
        }
        let lines = lines
            .into_iter()
            .map(|(precision, mut points)| {
                points.sort_by_key(|p| p.0);
                (precision, points.into_iter().map(|(_, x, y)| (x, y)).collect())
            })
            .collect();
        Some(LocalPlot { kind, x, y, lines })
    }
}

impl Figure for LocalPlot {
    fn stem(&self) -> String {
        match self.kind {
            LocalAxis::EffectiveBops => "local_accuracy_vs_effective_bops".into(),
            LocalAxis::Sparsity => "local_accuracy_vs_sparsity".into(),
            LocalAxis::Lut => "local_accuracy_vs_lut".into(),
        }
    }

    fn size(&self) -> (u32, u32) {
        PAIR_SIZE
    }

    fn series(&self) -> Vec<(String, usize)> {
        self.lines.iter().map(|(precision, points)| (precision.clone(), points.len())).collect()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let title = match self.kind {
            LocalAxis::EffectiveBops => "Local search: accuracy vs effective BOPs",
            LocalAxis::Sparsity => "Local search: accuracy vs sparsity",
            LocalAxis::Lut => "Local search: accuracy vs estimated LUTs",
        };
        let (plot, legend) = with_legend(root);
        let mut chart = chart(&plot, title, LARGE, &self.x, &self.y)?;
        let mut entries = Vec::new();
        for (index, (precision, points)) in self.lines.iter().enumerate() {
            let colour = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                .map_err(drawing_error)?;
            chart
                .draw_series(points.iter().map(|&(x, y)| Circle::new((x, y), 4, colour.filled())))
                .map_err(drawing_error)?;
            entries.push((precision.clone(), colour, Marker::Square));
        }
        draw_legend(&legend, &entries)
    }
}

/// A curve's label and how to read it from an epoch.
type Curve = (&'static str, fn(&Epoch) -> f64);

/// Loss and accuracy per epoch of one trial.
#[derive(Clone, Debug)]
pub struct TrainingCurves {
    pub trial: u64,
    pub history: Vec<Epoch>,
}

impl TrainingCurves {
    /// The curves of the best trial, when it has a stored history.
    pub fn best(results: &Results) -> Option<TrainingCurves> {
        let best = results.best()?;
        (!best.history.is_empty()).then(|| TrainingCurves { trial: best.number, history: best.history.clone() })
    }

    fn panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, title: &str, curves: [Curve; 2]) -> Result<()> {
        // Linear axes: epochs and the curves are drawn as they are.
        let mut epochs = Axis::fit("epoch", self.history.iter().map(|e| e.epoch).collect::<Vec<_>>());
        epochs.log = false;
        let values: Vec<f64> = curves.iter().flat_map(|(_, f)| self.history.iter().map(f)).collect();
        let mut y = Axis::fit(title, values);
        y.log = false;
        let mut chart = chart(area, &format!("{title} of trial {}", self.trial), SMALL, &epochs, &y)?;
        for (index, (label, value)) in curves.into_iter().enumerate() {
            let colour = if index == 0 { TRIAL_COLOUR } else { FRONT_COLOUR };
            let points: Vec<(f64, f64)> =
                self.history.iter().map(|e| (e.epoch, value(e))).filter(|(_, v)| v.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                .map_err(drawing_error)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(drawing_error)?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT_FAMILY, 14))
            .draw()
            .map_err(drawing_error)?;
        Ok(())
    }
}

impl Figure for TrainingCurves {
    fn stem(&self) -> String {
        "training_curves_best".into()
    }

    fn size(&self) -> (u32, u32) {
        CURVES_SIZE
    }

    fn series(&self) -> Vec<(String, usize)> {
        let count = |f: fn(&Epoch) -> f64| self.history.iter().filter(|e| f(e).is_finite()).count();
        vec![
            ("train loss".into(), count(|e| e.train_loss)),
            ("val loss".into(), count(|e| e.val_loss)),
            ("train accuracy".into(), count(|e| e.train_accuracy)),
            ("val accuracy".into(), count(|e| e.val_accuracy)),
        ]
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (left, right) = root.split_horizontally(CURVES_SIZE.0 / 2);
        self.panel(&left, "loss", [("train loss", |e| e.train_loss), ("val loss", |e| e.val_loss)])?;
        self.panel(&right, "accuracy", [("train accuracy", |e| e.train_accuracy), ("val accuracy", |e| e.val_accuracy)])
    }
}

/// What [`animate`] wrote.
#[derive(Clone, Debug)]
pub struct Animation {
    pub path: PathBuf,
    pub size: (u32, u32),
    /// Number of completed trials shown in each frame.
    pub frames: Vec<usize>,
    /// Points on the front in each frame.
    pub front_sizes: Vec<usize>,
    /// The x and y axes, the same in every frame.
    pub axes: [Axis; 2],
}

/// Frames of the animation at most; a longer search shows every k-th trial.
pub const MAX_FRAMES: usize = 60;
/// Extra copies of the last frame, so the final front stays on screen.
pub const HOLD_FRAMES: usize = 4;

/// Writes a GIF of the first two objectives' Pareto front as the completed
/// trials accumulate (in trial-number order), axes fixed to the final range.
/// `None` when fewer than two objectives or no completed trial.
pub fn animate(results: &Results, path: &Path) -> Result<Option<Animation>> {
    ensure_font()?;
    let [x, y] = match results.objectives.as_slice() {
        [x, y, ..] => [x, y],
        _ => return Ok(None),
    };
    let trials: Vec<&TrialRecord> = results.complete().collect();
    if trials.is_empty() {
        return Ok(None);
    }
    let x_axis = Axis::fit(&x.name, trials.iter().map(|t| t.metric(&x.name)).collect::<Vec<_>>());
    let y_axis = Axis::fit(&y.name, trials.iter().map(|t| t.metric(&y.name)).collect::<Vec<_>>());
    let n = trials.len();
    let step = n.div_ceil(MAX_FRAMES);
    let mut frames: Vec<usize> = (1..=n).filter(|k| k % step == 0).collect();
    if frames.last() != Some(&n) {
        frames.push(n);
    }
    frames.extend(std::iter::repeat_n(n, HOLD_FRAMES));
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".animation.tmp{}.gif", std::process::id()));
    let mut front_sizes = Vec::new();
    {
        let root = BitMapBackend::gif(&tmp, ANIMATION_SIZE, 250)
            .map_err(drawing_error)
            .with_context(|| format!("creating {}", tmp.display()))?
            .into_drawing_area();
        for &shown in &frames {
            let plot = PairPlot::from_trials(
                &trials[..shown],
                x_axis.clone(),
                y_axis.clone(),
                [x.direction(), y.direction()],
                format!("Pareto front after {shown} of {n} completed trials"),
                String::new(),
                ANIMATION_SIZE,
            );
            front_sizes.push(plot.front.len());
            root.fill(&WHITE).map_err(drawing_error)?;
            plot.draw(&root)?;
            root.present().map_err(drawing_error).with_context(|| format!("writing {}", tmp.display()))?;
        }
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(Some(Animation { path: path.to_path_buf(), size: ANIMATION_SIZE, frames, front_sizes, axes: [x_axis, y_axis] }))
}

/// Everything [`write_plots`] wrote.
#[derive(Clone, Debug, Default)]
pub struct PlotSet {
    pub figures: Vec<Drawn>,
    pub animation: Option<Animation>,
}

impl PlotSet {
    pub fn figure(&self, stem: &str) -> Option<&Drawn> {
        self.figures.iter().find(|f| f.stem == stem)
    }

    /// Every file written.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.figures.iter().flat_map(|f| f.files.clone()).collect();
        files.extend(self.animation.iter().map(|a| a.path.clone()));
        files
    }
}

/// Every plot of `results` into `dir`: each pair of objectives, the 3-D view
/// (three or more objectives), the local-search plots (when there is a log),
/// the best trial's training curves (when stored), and the animation.
pub fn write_plots(results: &Results, dir: &Path) -> Result<PlotSet> {
    let mut set = PlotSet::default();
    let objectives = &results.objectives;
    for (i, x) in objectives.iter().enumerate() {
        for y in &objectives[..i] {
            // The earlier objective (accuracy first) goes up the y axis.
            set.figures.push(save(&PairPlot::new(results, &x.name, &y.name), dir)?);
        }
    }
    if let Some(view) = View3d::new(results) {
        set.figures.push(save(&view, dir)?);
    }
    for kind in LocalAxis::ALL {
        if let Some(plot) = LocalPlot::new(&results.local, kind) {
            set.figures.push(save(&plot, dir)?);
        }
    }
    if let Some(curves) = TrainingCurves::best(results) {
        set.figures.push(save(&curves, dir)?);
    }
    set.animation = animate(results, &dir.join("pareto_animation.gif"))?;
    Ok(set)
}
