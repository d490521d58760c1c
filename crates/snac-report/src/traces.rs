//! Readout traces per class (qubit data: I and Q interleaved per sample):
//! each class's mean trace and a few single shots, I and Q side by side.

use crate::plots::{Axis, FONT_FAMILY, Figure, SMALL, chart, drawing_error};
use anyhow::{Result, ensure};
use plotters::coord::Shift;
use plotters::prelude::*;

const SIZE: (u32, u32) = (1200, 450);
const SHOTS_PER_CLASS: usize = 3;
const COLOURS: [RGBColor; 4] =
    [RGBColor(70, 110, 190), RGBColor(215, 40, 40), RGBColor(40, 150, 70), RGBColor(150, 80, 180)];

/// One class: its label, mean I and Q traces, and a few single shots (I, Q).
type ClassTraces = (u32, Vec<f64>, Vec<f64>, Vec<(Vec<f64>, Vec<f64>)>);

/// Traces of `x` (row-major, `2·T` values per shot: I₀, Q₀, I₁, Q₁, …) by label.
pub struct Traces {
    /// Per class: (label, mean I, mean Q, a few single shots as (I, Q)).
    classes: Vec<ClassTraces>,
    pub sample_ns: f64,
}

impl Traces {
    pub fn new(x: &[f32], y: &[u32], features: usize, sample_ns: f64) -> Result<Traces> {
        ensure!(
            features >= 2 && features.is_multiple_of(2),
            "traces need I/Q pairs: {features} values per shot is odd"
        );
        ensure!(x.len() == y.len() * features, "{} values are not {} shots of {features}", x.len(), y.len());
        let steps = features / 2;
        let mut labels: Vec<u32> = y.to_vec();
        labels.sort_unstable();
        labels.dedup();
        let classes = labels
            .into_iter()
            .map(|label| {
                let shots: Vec<&[f32]> =
                    x.chunks_exact(features).zip(y).filter(|(_, l)| **l == label).map(|(s, _)| s).collect();
                let mean = |offset: usize| -> Vec<f64> {
                    (0..steps)
                        .map(|t| shots.iter().map(|s| s[2 * t + offset] as f64).sum::<f64>() / shots.len() as f64)
                        .collect()
                };
                let singles = shots
                    .iter()
                    .take(SHOTS_PER_CLASS)
                    .map(|s| {
                        (
                            (0..steps).map(|t| s[2 * t] as f64).collect(),
                            (0..steps).map(|t| s[2 * t + 1] as f64).collect(),
                        )
                    })
                    .collect();
                (label, mean(0), mean(1), singles)
            })
            .collect();
        Ok(Traces { classes, sample_ns })
    }

    fn panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, quadrature: usize) -> Result<()> {
        let name = if quadrature == 0 { "I" } else { "Q" };
        let steps = self.classes.first().map_or(0, |c| c.1.len());
        let all = self.classes.iter().flat_map(|c| {
            let mean = if quadrature == 0 { &c.1 } else { &c.2 };
            mean.iter().chain(c.3.iter().flat_map(|(i, q)| if quadrature == 0 { i.iter() } else { q.iter() }))
        });
        let (low, high) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let pad = ((high - low) * 0.05).max(1e-9);
        let t_max = steps as f64 * self.sample_ns;
        let time = Axis { name: "time (ns)".into(), log: false, range: 0.0..t_max };
        let values = Axis { name: format!("{name} (ADC units)"), log: false, range: (low - pad)..(high + pad) };
        let mut chart = chart(area, &format!("{name} quadrature"), SMALL, &time, &values)?;
        for (index, (label, mean_i, mean_q, singles)) in self.classes.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let time = |t: usize| t as f64 * self.sample_ns;
            for (i, q) in singles {
                let values = if quadrature == 0 { i } else { q };
                chart
                    .draw_series(LineSeries::new(
                        values.iter().enumerate().map(|(t, &v)| (time(t), v)),
                        colour.mix(0.25),
                    ))
                    .map_err(drawing_error)?;
            }
            let mean = if quadrature == 0 { mean_i } else { mean_q };
            chart
                .draw_series(LineSeries::new(
                    mean.iter().enumerate().map(|(t, &v)| (time(t), v)),
                    colour.stroke_width(3),
                ))
                .map_err(drawing_error)?
                .label(format!("state {label}: mean"))
                .legend(move |(x, y)| Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], colour.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT_FAMILY, 14))
            .draw()
            .map_err(drawing_error)?;
        Ok(())
    }
}

impl Figure for Traces {
    fn stem(&self) -> String {
        "traces".into()
    }

    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn series(&self) -> Vec<(String, usize)> {
        self.classes
            .iter()
            .flat_map(|(label, mean, _, singles)| {
                [(format!("state {label} mean"), mean.len()), (format!("state {label} shots"), singles.len())]
            })
            .collect()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        self.panel(&left, 0)?;
        self.panel(&right, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_per_class_with_means() {
        // Two classes, 5 time steps: class 1's I rises, Q stays.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for shot in 0..8u32 {
            let label = shot % 2;
            for t in 0..5 {
                x.push(if label == 1 { t as f32 * 10.0 } else { 0.0 } + shot as f32);
                x.push(-1.0);
            }
            y.push(label);
        }
        let traces = Traces::new(&x, &y, 10, 2.6).unwrap();
        assert_eq!(traces.classes.len(), 2);
        let (_, mean_i, mean_q, singles) = &traces.classes[1];
        // Class 1 shots are 1, 3, 5, 7: mean offset 4.
        assert_eq!(mean_i, &vec![4.0, 14.0, 24.0, 34.0, 44.0]);
        assert_eq!(mean_q, &vec![-1.0; 5]);
        assert_eq!(singles.len(), 3);
        assert_eq!(
            traces.series(),
            [
                ("state 0 mean".into(), 5),
                ("state 0 shots".into(), 3),
                ("state 1 mean".into(), 5),
                ("state 1 shots".into(), 3)
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let drawn = crate::plots::save(&traces, dir.path()).unwrap();
        assert_eq!(drawn.size, SIZE);
        let svg = std::fs::read_to_string(dir.path().join("traces.svg")).unwrap();
        let means = svg.split("<polyline").filter(|p| p.contains("stroke-width=\"3\"")).count();
        assert_eq!(means, 2 * 2, "2 panels × 2 classes' means");
        assert!(Traces::new(&x, &y, 9, 2.6).is_err());
    }
}
