//! The search-quality figure of `snac bench search`: per sampler, the
//! median normalised hypervolume over seeds after each trial, with a band
//! from the lowest to the highest seed.

use crate::plots::{FONT_FAMILY, Figure, drawing_error};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One sampler's curve: per trial count (1-based), (median, min, max).
#[derive(Clone, Debug)]
pub struct QualityCurve {
    pub label: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Hypervolume against trials for several samplers.
#[derive(Clone, Debug)]
pub struct QualityPlot {
    pub title: String,
    pub curves: Vec<QualityCurve>,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(215, 40, 40),
    RGBColor(70, 110, 190),
    RGBColor(40, 150, 70),
    RGBColor(150, 80, 170),
    RGBColor(240, 140, 0),
    RGBColor(90, 90, 90),
];

impl Figure for QualityPlot {
    fn stem(&self) -> String {
        "search_quality".into()
    }

    fn size(&self) -> (u32, u32) {
        (900, 600)
    }

    fn series(&self) -> Vec<(String, usize)> {
        self.curves.iter().map(|c| (c.label.clone(), c.points.len())).collect()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let max_x = self.curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).fold(1.0, f64::max);
        let max_y = self.curves.iter().flat_map(|c| c.points.iter().map(|p| p.3)).fold(1e-9, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT_FAMILY, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y * 1.05)
            .map_err(drawing_error)?;
        chart
            .configure_mesh()
            .x_desc("trials")
            .y_desc("normalised hypervolume")
            .label_style((FONT_FAMILY, 14))
            .draw()
            .map_err(drawing_error)?;
        for (i, curve) in self.curves.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let mut band: Vec<(f64, f64)> = curve.points.iter().map(|p| (p.0, p.3)).collect();
            band.extend(curve.points.iter().rev().map(|p| (p.0, p.2)));
            chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.15)))).map_err(drawing_error)?;
            chart
                .draw_series(LineSeries::new(curve.points.iter().map(|p| (p.0, p.1)), colour.stroke_width(2)))
                .map_err(drawing_error)?
                .label(curve.label.clone())
                .legend(move |(x, y)| Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT_FAMILY, 14))
            .draw()
            .map_err(drawing_error)?;
        Ok(())
    }
}
