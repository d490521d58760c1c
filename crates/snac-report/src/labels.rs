//! How metrics are shown to people: one label and one axis scale for each
//! metric name (an objective, a CSV column, a local-search column), used by
//! the PNG/SVG plots, the Pareto GIF and the scatter of `report.html` alike.
//! Costs that span decades (BOPs above all) are drawn on log axes.

/// How an axis of a metric is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Always linear (accuracy, sparsity: bounded, read as differences).
    Linear,
    /// Logarithmic whenever every value is positive (BOPs: trials differ by
    /// orders of magnitude).
    Log,
    /// Logarithmic when the positive values span more than one decade
    /// (other costs), linear otherwise.
    LogIfWide,
}

impl Scale {
    /// The name `report.js` reads.
    pub fn name(&self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log => "log",
            Scale::LogIfWide => "log_if_wide",
        }
    }

    /// Whether values from `min` to `max` are drawn on a log axis.
    pub fn is_log(&self, min: f64, max: f64) -> bool {
        match self {
            Scale::Linear => false,
            Scale::Log => min > 0.0 && max >= min,
            Scale::LogIfWide => min > 0.0 && max / min > 10.0,
        }
    }
}

/// Metric name, label, scale.
const METRICS: [(&str, &str, Scale); 17] = [
    ("performance_metric", "validation accuracy", Scale::Linear),
    ("accuracy", "validation accuracy", Scale::Linear),
    ("bops", "bit operations (BOPs)", Scale::Log),
    ("effective_bops", "effective bit operations (BOPs)", Scale::Log),
    ("bops_effective", "effective bit operations (BOPs)", Scale::Log),
    ("params", "parameters", Scale::LogIfWide),
    ("avg_resource", "mean FPGA resource use (% of board)", Scale::LogIfWide),
    ("clock_cycles", "latency (clock cycles)", Scale::LogIfWide),
    ("interval", "initiation interval (clock cycles)", Scale::LogIfWide),
    ("lut", "LUTs", Scale::LogIfWide),
    ("ff", "flip-flops (FFs)", Scale::LogIfWide),
    ("dsp", "DSPs", Scale::LogIfWide),
    ("bram", "block RAMs (18 Kb)", Scale::LogIfWide),
    ("lut_pct", "LUTs (% of board)", Scale::LogIfWide),
    ("sparsity", "sparsity", Scale::Linear),
    ("duration_s", "trial time (s)", Scale::LogIfWide),
    ("epoch", "epoch", Scale::Linear),
];

/// The label of a metric for axes, legends and tooltips; an unknown name is
/// shown as it is.
pub fn label(name: &str) -> &str {
    METRICS.iter().find(|(known, _, _)| *known == name).map_or(name, |(_, label, _)| label)
}

/// How an axis of the metric is scaled; linear for an unknown name.
pub fn scale(name: &str) -> Scale {
    METRICS.iter().find(|(known, _, _)| *known == name).map_or(Scale::Linear, |(_, _, scale)| *scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_metric_has_a_label_for_people() {
        for (name, _) in crate::data::KNOWN_METRICS {
            assert_ne!(label(name), name, "{name} has no label");
        }
        assert_eq!(label("performance_metric"), "validation accuracy");
        assert_eq!(label("bops"), "bit operations (BOPs)");
        assert_eq!(label("lut"), "LUTs");
        assert_eq!(label("time (ns)"), "time (ns)");
    }

    #[test]
    fn bops_are_log_other_costs_when_wide_accuracy_never() {
        assert!(scale("bops").is_log(1e5, 3e5));
        assert!(!scale("bops").is_log(0.0, 3e5), "a zero cannot sit on a log axis");
        assert!(scale("params").is_log(100.0, 1001.0));
        assert!(!scale("params").is_log(100.0, 900.0));
        assert!(!scale("performance_metric").is_log(0.01, 0.99));
        assert!(!scale("unknown").is_log(1.0, 1e9));
        let names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a metric is listed twice");
    }
}
