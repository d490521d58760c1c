//! The command line's choice flags (`--strategy`, `--board`, `snac data fetch
//! NAME`, …) over snac-core's own lists and parsers, so there is one list per
//! choice: `--help` and the shell completions show snac-core's names, a value
//! is read by snac-core's parser (any case, its aliases), and anything else
//! gets clap's error with the accepted values and the closest one.

use clap::builder::{PossibleValue, PossibleValuesParser, StringValueParser, TypedValueParser};
use snac_core::config::DatasetName;
use snac_core::estimate::{Backend, Board, EstimatorKind, IoType, Report, Strategy};
use std::ffi::OsStr;

/// A value from a fixed set of names, read by a snac-core parser.
#[derive(Clone)]
pub struct Choice<T> {
    names: Vec<&'static str>,
    parse: fn(&str) -> Option<T>,
}

impl<T> Choice<T> {
    /// The choice among `names` (what `--help` lists), read by `parse`,
    /// which takes every name and may take more (aliases, other cases).
    pub fn new(names: impl IntoIterator<Item = &'static str>, parse: fn(&str) -> Option<T>) -> Choice<T> {
        Choice { names: names.into_iter().collect(), parse }
    }

    /// The names `--help` and the completions list.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Choice<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<T, clap::Error> {
        if let Some(found) = value.to_str().and_then(self.parse) {
            return Ok(found);
        }
        // clap's own error: the value, the flag, the accepted values and the
        // closest of them.
        match PossibleValuesParser::new(self.names.clone()).parse_ref(cmd, arg, value) {
            Err(error) => Err(error),
            Ok(name) => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("'{name}' is listed as accepted but snac-core's parser refuses it (a bug in snac)\n"),
            )),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.names.iter().map(|name| PossibleValue::new(*name))))
    }
}

/// `--strategy`: hls4ml's strategies.
pub fn strategy() -> Choice<Strategy> {
    Choice::new(Strategy::ALL.map(|s| s.name()), |text| Strategy::parse(text).ok())
}

/// `--estimator`: the resource estimators.
pub fn estimator() -> Choice<EstimatorKind> {
    Choice::new(EstimatorKind::ALL.map(|e| e.name()), EstimatorKind::parse)
}

/// `--io-type`: hls4ml's IOType.
pub fn io_type() -> Choice<IoType> {
    Choice::new(IoType::ALL.map(|i| i.name()), IoType::parse)
}

/// `--report`: which synthesis report an estimate predicts.
pub fn report() -> Choice<Report> {
    Choice::new(Report::ALL.map(|r| r.name()), Report::parse)
}

/// `--backend`: hls4ml's backends.
pub fn backend() -> Choice<Backend> {
    Choice::new(Backend::ALL.map(|b| b.name()), Backend::parse)
}

/// `snac export --board`: one of rule4ml's boards, by name.
pub fn board() -> Choice<Board> {
    Choice::new(Board::NAMES, |text| Board::by_name(text).ok())
}

/// `snac data fetch NAME`: the datasets that can be downloaded.
pub fn downloadable_dataset() -> Choice<DatasetName> {
    Choice::new(DatasetName::DOWNLOADABLE.map(|d| d.name()), |text| {
        DatasetName::parse(text).filter(|d| DatasetName::DOWNLOADABLE.contains(d))
    })
}

/// `snac data mnist-points --source`: the image datasets.
pub fn image_dataset() -> Choice<DatasetName> {
    let images = DatasetName::ALL.into_iter().filter(DatasetName::is_images).map(|d| d.name());
    Choice::new(images, |text| DatasetName::parse(text).filter(DatasetName::is_images))
}

/// `snac plot --objectives`: the metric columns of a search CSV.
pub fn metric() -> Choice<String> {
    use snac_report::data::KNOWN_METRICS;
    Choice::new(KNOWN_METRICS.map(|(name, _)| name), |text| {
        KNOWN_METRICS.iter().find(|(name, _)| *name == text).map(|(name, _)| name.to_string())
    })
}

/// `snac estimate --board`: a board by name (what `--help` and the
/// completions list), a known part number, or a custom part
/// `PART:LUT:FF:DSP:BRAM`, as [`Board::parse`] reads them; its error names
/// what is accepted and the board the value resembles.
#[derive(Clone)]
pub struct BoardOrPart;

impl TypedValueParser for BoardOrPart {
    type Value = Board;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<Board, clap::Error> {
        let parser = StringValueParser::new().try_map(|text| Board::parse(&text).map_err(|e| format!("{e:#}")));
        parser.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Board::NAMES.into_iter().map(PossibleValue::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each flag lists exactly what snac-core accepts, in its order.
    #[test]
    fn flags_list_what_snac_core_accepts() {
        assert_eq!(strategy().names().join(", "), "latency, resource");
        assert_eq!(estimator().names().join(", "), EstimatorKind::ACCEPTED);
        assert_eq!(io_type().names().join(", "), IoType::ACCEPTED);
        assert_eq!(report().names().join(", "), Report::ACCEPTED);
        assert_eq!(backend().names().join(", "), Backend::ACCEPTED);
        assert_eq!(board().names(), Board::NAMES);
        assert_eq!(downloadable_dataset().names(), ["mnist", "fashion_mnist"]);
        assert_eq!(image_dataset().names(), ["mnist", "fashion_mnist", "digits"]);
        let metrics: Vec<&str> = snac_report::data::KNOWN_METRICS.iter().map(|(name, _)| *name).collect();
        assert_eq!(metric().names(), metrics);
        // Every listed name is read back by the parser behind it.
        for name in strategy().names() {
            assert_eq!((strategy().parse)(name).unwrap().name(), *name);
        }
        for name in board().names() {
            assert_eq!((board().parse)(name).unwrap().name, *name);
        }
    }

    #[test]
    fn aliases_and_other_cases_are_read_and_other_values_get_clap_s_error() {
        let mut cmd = clap::Command::new("t").arg(clap::Arg::new("backend").long("backend"));
        cmd.build();
        let arg = cmd.get_arguments().next();
        let backend = backend();
        assert_eq!(backend.parse_ref(&cmd, arg, OsStr::new("vitis_hls")).unwrap(), Backend::Vitis);
        assert_eq!(backend.parse_ref(&cmd, arg, OsStr::new("VIVADO")).unwrap(), Backend::Vivado);
        let error = backend.parse_ref(&cmd, arg, OsStr::new("Vitiss")).unwrap_err().to_string();
        assert!(error.contains("'Vitiss'") && error.contains("Vivado, Vitis"), "{error}");
        assert!(error.contains("a similar value exists: 'Vitis'"), "{error}");
        let error = BoardOrPart.parse_ref(&cmd, arg, OsStr::new("zcu012")).unwrap_err().to_string();
        assert!(error.contains("did you mean 'zcu102'?") && error.contains("PART:LUT:FF:DSP:BRAM"), "{error}");
        assert_eq!(BoardOrPart.parse_ref(&cmd, arg, OsStr::new("xcu250-figd2104")).unwrap().name, "alveo-u250");
    }
}
