//! The experiment schema: walks the sections of the YAML tree, fills the typed
//! [`Experiment`] with values or defaults, and records every bad value on the
//! way. The result is only used when no error was recorded.

use super::reader::{Ctx, Field, Map, is_null, join, scalar, untag};
use crate::arch::{Activation, Aggregation, Norm};
use crate::config::{
    ConstraintMetric, DEFAULT_ACCURACY_TOLERANCE, DEFAULT_MIN_BITS, DatasetConfig, DatasetName, Experiment, HlsConfig,
    LayerRange, LocalSearchConfig, LocalSearchMode, ModelType, Objective, OutputConfig, PrecisionMode,
    PrecisionObjective, PrecisionPair, PrunerKind, SamplerKind, SearchConfig, SearchSpaceConfig, SynthesisConfig,
    UnusedKey,
};
use crate::estimate::rule4ml::{HLS4ML_VERSIONS, VIVADO_VERSIONS};
use crate::estimate::{Backend, DEFAULT_CLOCK_PERIOD_NS, EstimatorKind, IoType, Rule4mlRow};
use saphyr::{ScalarOwned, YamlDataOwned};
use std::path::{Path, PathBuf};

/// FPGA boards `hls_config.board` accepts.
pub const BOARDS: [&str; 4] = ["zcu102", "pynq-z2", "alveo-u200", "alveo-u250"];
/// Block types `search_space.block_types` accepts, in their canonical spelling.
pub const BLOCK_TYPES: [&str; 4] = ["Conv", "ConvAttn", "MLP", "None"];
/// Local-search precisions when `precision_pairs` is not given (the tutorials').
pub const DEFAULT_PRECISION_PAIRS: [(u32, u32); 4] = [(16, 6), (8, 3), (6, 2), (4, 1)];
/// Widest `total_bits` accepted for QAT precisions.
pub const MAX_BITS: i64 = 32;
/// Upper bounds of the sizes that become allocations: far above what an
/// FPGA network uses, far below what makes a trial abort for memory.
/// A layer's units or channels (a 4096 × 4096 Dense is 16 M weights).
pub const MAX_WIDTH: usize = 4096;
/// Layers of an MLP or blocks of a block search.
pub const MAX_LAYERS: usize = 64;
/// `dataset.resize_val`: images up to 128 × 128 (MNIST at that size is
/// 4.6 GB of f32).
pub const MAX_RESIZE: usize = 128;
/// `dataset.points`: points per set.
pub const MAX_POINTS: usize = 4096;
/// `search.batch_size`.
pub const MAX_BATCH: usize = 65536;
/// `local_search.pruning_iterations`: at the default rate 0.8, 100
/// iterations prune all but 2·10⁻¹⁰ of the weights; every iteration's
/// weights are kept for the log and the final choice.
pub const MAX_PRUNING_ITERATIONS: usize = 100;

/// Points per set when a `*_points` dataset name comes without `points`.
pub const DEFAULT_POINTS: usize = 32;

const HIDDEN_ACTIVATIONS: &str = "relu, leaky_relu (LeakyReLU), gelu, tanh, sigmoid, identity (linear); \
                                  softmax only as output_activation";

/// A map being checked, with the error collector.
struct Section<'c, 's, 'n> {
    ctx: &'c mut Ctx<'s>,
    map: Map<'n>,
}

impl<'c, 's, 'n> Section<'c, 's, 'n> {
    /// Opens `key` of `parent` as a section (absent or empty: all defaults).
    fn open(ctx: &'c mut Ctx<'s>, parent: &mut Map<'n>, key: &str) -> Self {
        let field = parent.get(key);
        let map = ctx.map(&parent.path_of(key), parent.line_of(key), field);
        Section { ctx, map }
    }

    fn path(&self, key: &str) -> String {
        self.map.path_of(key)
    }

    fn finish(self) {
        self.map.finish(self.ctx);
    }

    fn opt_count(&mut self, key: &str, min: usize) -> Option<usize> {
        let field = self.map.get(key)?;
        self.ctx.count(&self.path(key), field, min)
    }

    fn count_or(&mut self, key: &str, min: usize, default: usize) -> usize {
        self.opt_count(key, min).unwrap_or(default)
    }

    /// A count in `min..=max`: sizes that become allocations are bounded
    /// here, so an absurd value is an error naming the key instead of an
    /// out-of-memory abort later.
    fn opt_count_in(&mut self, key: &str, min: usize, max: usize) -> Option<usize> {
        let field = self.map.get(key)?;
        let path = self.path(key);
        self.ctx.int_in(&path, field, min as i64, max as i64).map(|n| n as usize)
    }

    fn bool_or(&mut self, key: &str, default: bool) -> bool {
        match self.map.get(key) {
            Some(field) => self.ctx.boolean(&self.path(key), field).unwrap_or(default),
            None => default,
        }
    }

    fn number_or(&mut self, key: &str, default: f64, accepted: &str, check: impl Fn(f64) -> bool) -> f64 {
        match self.map.get(key) {
            Some(field) => self.ctx.number(&self.path(key), field, accepted, check).unwrap_or(default),
            None => default,
        }
    }

    fn opt_number(&mut self, key: &str, accepted: &str, check: impl Fn(f64) -> bool) -> Option<f64> {
        let field = self.map.get(key)?;
        self.ctx.number(&self.path(key), field, accepted, check)
    }

    /// A duration (`search.timeout`): a string such as `1h30m`, or a
    /// number of seconds.
    fn opt_duration(&mut self, key: &str) -> Option<std::time::Duration> {
        let field = self.map.get(key)?;
        let path = self.path(key);
        let text = match scalar(field.node) {
            Some(ScalarOwned::String(text)) => text.clone(),
            Some(ScalarOwned::Integer(n)) => n.to_string(),
            Some(ScalarOwned::FloatingPoint(x)) => x.into_inner().to_string(),
            _ => {
                self.ctx.reject(&path, field, "a duration", crate::config::DURATION_FORMS);
                return None;
            }
        };
        crate::config::parse_duration(&text).map_err(|message| self.ctx.error(&path, Some(field.line), message)).ok()
    }

    fn opt_string(&mut self, key: &str, what: &str) -> Option<String> {
        let field = self.map.get(key)?;
        self.ctx.string(&self.path(key), field, what)
    }

    /// A path, resolved against the config file's directory when relative.
    fn opt_path(&mut self, key: &str, config_dir: &Path) -> Option<PathBuf> {
        self.opt_string(key, "a path").map(|text| resolve(config_dir, &text))
    }

    fn opt_choice<T>(&mut self, key: &str, what: &str, accepted: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let field = self.map.get(key)?;
        self.ctx.choice(&self.path(key), field, what, accepted, parse)
    }

    /// A required choice: reports a missing key.
    fn required_choice<T>(
        &mut self,
        key: &str,
        what: &str,
        accepted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        if self.map.get(key).is_none() {
            self.map.require(self.ctx, key, accepted);
            return None;
        }
        self.opt_choice(key, what, accepted, parse)
    }

    /// A non-empty list; each item is read by `item` (which reports its own
    /// errors). Bad items are dropped; `default` when the key is absent.
    fn list_or<T>(
        &mut self,
        key: &str,
        default: Vec<T>,
        accepted: &str,
        mut item: impl FnMut(&mut Ctx<'s>, &str, Field<'n>) -> Option<T>,
    ) -> Vec<T> {
        let Some(field) = self.map.get(key) else { return default };
        let path = self.path(key);
        let Some(items) = self.ctx.list(&path, field, &format!("a list of {accepted}")) else { return default };
        if items.is_empty() {
            self.ctx.error(&path, Some(field.line), format!("the list is empty; accepted: a list of {accepted}"));
            return default;
        }
        items.into_iter().filter_map(|(item_path, item_field)| item(self.ctx, &item_path, item_field)).collect()
    }

    fn positive_list_or(&mut self, key: &str, default: &[usize]) -> Vec<usize> {
        self.list_or(key, default.to_vec(), "whole numbers ≥ 1", |ctx, path, field| ctx.count(path, field, 1))
    }

    /// Widths (units, channels): whole numbers from 1 to [`MAX_WIDTH`].
    fn width_list_or(&mut self, key: &str, default: &[usize]) -> Vec<usize> {
        let accepted = format!("whole numbers from 1 to {MAX_WIDTH}");
        self.list_or(key, default.to_vec(), &accepted, |ctx, path, field| {
            ctx.int_in(path, field, 1, MAX_WIDTH as i64).map(|n| n as usize)
        })
    }

    /// A count of layers: one whole number ≥ `min` (fixed), or `[low, high]`
    /// with `min ≤ low ≤ high` (drawn per trial).
    fn layer_range_or(&mut self, key: &str, min: usize, default: LayerRange) -> LayerRange {
        let Some(field) = self.map.get(key) else { return default };
        let path = self.path(key);
        let accepted = format!("a whole number ≥ {min}, or [low, high] with {min} ≤ low ≤ high");
        if !matches!(untag(field.node).data, YamlDataOwned::Sequence(_)) {
            if matches!(scalar(field.node), Some(ScalarOwned::Integer(_))) {
                return self.ctx.count(&path, field, min).map_or(default, |n| LayerRange { min: n, max: n });
            }
            self.ctx.reject(&path, field, "a layer count", &accepted);
            return default;
        }
        let items = self.ctx.list(&path, field, &accepted).unwrap_or_default();
        if items.len() != 2 {
            let message = format!("a list of {} items is not a range; accepted: {accepted}", items.len());
            self.ctx.error(&path, Some(field.line), message);
            return default;
        }
        let bounds: Vec<Option<usize>> =
            items.iter().map(|(item_path, item)| self.ctx.count(item_path, *item, min)).collect();
        let (Some(low), Some(high)) = (bounds[0], bounds[1]) else { return default };
        if low > high {
            let message = format!("[{low}, {high}] has low above high; accepted: {accepted}");
            self.ctx.error(&path, Some(field.line), message);
            return default;
        }
        LayerRange { min: low, max: high }
    }
}

/// Resolves a relative path against the config file's directory.
fn resolve(config_dir: &Path, text: &str) -> PathBuf {
    let path = PathBuf::from(text);
    if path.is_absolute() || config_dir.as_os_str().is_empty() { path } else { config_dir.join(path) }
}

/// Checks the whole tree. `root` is the document's top-level map (or `None`
/// for an empty file).
pub(super) fn experiment<'n>(ctx: &mut Ctx<'_>, root: Option<Field<'n>>, file: &Path) -> Experiment {
    let mut root = ctx.map("", None, root);
    // Missing sections have no line to point at.
    root.line = None;
    let config_dir = file.parent().unwrap_or(Path::new(""));
    // The model type decides how the data is read (sets or images).
    let search = search(ctx, &mut root);
    let (dataset, flatten_line) = dataset(ctx, &mut root, config_dir, search.model_type);
    let (search_space, block_types_line) = search_space(ctx, &mut root, search.model_type);
    // Conv and ConvAttn blocks need images: on flattened input the space
    // would silently leave every one of them out.
    let conv = search_space.block_types.iter().find(|b| *b == "Conv" || *b == "ConvAttn");
    if let (ModelType::Block, true, Some(conv)) = (search.model_type, dataset.flatten, conv) {
        let how = if flatten_line.is_some() { "true" } else { "true by default" };
        let message = format!(
            "{how}, but search_space.block_types has {conv}, which needs images: on vectors every {conv} block \
             would be left out; accepted: flatten: false with Conv/ConvAttn blocks, or block_types without them"
        );
        ctx.error("dataset.flatten", flatten_line.or(block_types_line), message);
    }
    let hls = hls(ctx, &mut root);
    let local_search = local_search(ctx, &mut root);
    let output = output(ctx, &mut root, file);
    let synthesis = synthesis(ctx, &mut root, local_search.as_ref(), &output);
    root.finish(ctx);
    let mut unused = std::mem::take(&mut ctx.unused);
    unused.sort_by_key(|key| key.line);
    Experiment {
        source: file.to_path_buf(),
        dataset,
        search,
        search_space,
        hls,
        local_search,
        synthesis,
        output,
        unused_keys: unused,
    }
}

/// A dataset name; `*_points` names also ask for point sets.
fn parse_dataset_name(text: &str) -> Option<(DatasetName, bool)> {
    let key = text.to_lowercase().replace('-', "_");
    match key.strip_suffix("_points") {
        Some(base) => DatasetName::parse(base).filter(DatasetName::is_images).map(|name| (name, true)),
        None => DatasetName::parse(&key).map(|name| (name, false)),
    }
}

/// The dataset section, and the line of its `flatten` key if it has one.
fn dataset(
    ctx: &mut Ctx<'_>,
    root: &mut Map<'_>,
    config_dir: &Path,
    model_type: ModelType,
) -> (DatasetConfig, Option<usize>) {
    let mut s = Section::open(ctx, root, "dataset");
    let named = s.required_choice("name", "a dataset", DatasetName::ACCEPTED, parse_dataset_name);
    let name = named.map(|(name, _)| name);
    let sets = model_type == ModelType::DeepSets;
    let points =
        s.opt_count_in("points", 1, MAX_POINTS).or(named.filter(|(_, points)| *points).map(|_| DEFAULT_POINTS));
    // Sets stay sets for DeepSets; everything else is flattened by default (SNAC-Pack).
    let flatten_path = s.path("flatten");
    let flatten_field = s.map.get("flatten");
    let flatten_line = flatten_field.map(|field| field.line);
    let flatten = flatten_field.and_then(|field| s.ctx.boolean(&flatten_path, field)).unwrap_or(!sets);
    if let Some(field) = flatten_field.filter(|_| sets && flatten) {
        let message = "true would flatten every set into one vector; accepted: false (or leave it out) \
                       with search.model_type: deepsets";
        s.ctx.error(flatten_path, Some(field.line), message);
    }
    let config = DatasetConfig {
        name: name.unwrap_or(DatasetName::Digits),
        resize_val: s.opt_count_in("resize_val", 1, MAX_RESIZE),
        subset_size: s.opt_count("subset_size", 1),
        flatten,
        one_hot: s.bool_or("one_hot", true),
        data_dir: s.opt_path("data_dir", config_dir),
        train_file: s.opt_path("train_file", config_dir),
        train_labels: s.opt_path("train_labels", config_dir),
        val_file: s.opt_path("val_file", config_dir),
        val_labels: s.opt_path("val_labels", config_dir),
        validation_split: s
            .number_or("validation_split", 0.2, "a number between 0 and 1 (exclusive)", |v| v > 0.0 && v < 1.0),
        start_location: s.opt_count("start_location", 0),
        window_size: s.opt_count("window_size", 1),
        normalize: s.bool_or("normalize", false),
        num_classes: s.opt_count("num_classes", 2),
        points,
        sets,
    };
    if name == Some(DatasetName::File) && config.train_file.is_none() {
        s.map.require(s.ctx, "train_file", "a .npy, .npz or .csv file (needed when dataset.name is file)");
    }
    if let Some(name) = name {
        let images = name.is_images() || name == DatasetName::File;
        if points.is_some() && !images {
            let message = format!(
                "turns images into point sets, but {} samples are not images; accepted: points with mnist, \
                 fashion_mnist, digits or file images",
                name.name()
            );
            let line = s.map.line_of("points");
            s.ctx.error(s.path("points"), line, message);
        } else if sets && points.is_none() && name != DatasetName::File {
            let message = format!(
                "'{}' holds {}, but search.model_type: deepsets needs sets; accepted: mnist_points, \
                 fashion_mnist_points, digits_points (or points: N with an image dataset), or file data of shape \
                 (N, elements, features)",
                name.name(),
                if images { "images" } else { "vectors" }
            );
            let line = s.map.line_of("name");
            s.ctx.error(s.path("name"), line, message);
        }
    }
    // The qubit reader's keys mean nothing for another dataset: say so
    // rather than ignore them.
    if name.is_some_and(|name| name != DatasetName::Qubit) {
        for key in ["start_location", "window_size", "normalize", "num_classes"] {
            if let Some(line) = s.map.get(key).map(|field| field.line) {
                s.ctx.unused.push(UnusedKey {
                    path: s.path(key),
                    line,
                    detail: Some("read only with dataset name qubit".into()),
                    suggestion: None,
                });
            }
        }
    }
    s.finish();
    (config, flatten_line)
}

fn search(ctx: &mut Ctx<'_>, root: &mut Map<'_>) -> SearchConfig {
    let mut s = Section::open(ctx, root, "search");
    let model_type = s.required_choice("model_type", "a model type", ModelType::ACCEPTED, ModelType::parse);
    let n_trials = s.count_or("n_trials", 1, 10);
    let epochs = s.count_or("epochs", 1, 10);
    let n_folds = s.count_or("n_folds", 1, 1);
    let use_hardware_metrics = s.bool_or("use_hardware_metrics", false);
    let objectives = objectives(&mut s, use_hardware_metrics);
    let seed = s.opt_count("seed", 0).map(|n| n as u64).unwrap_or(42);
    let sampler = s.opt_choice("sampler", "a sampler", SamplerKind::ACCEPTED, SamplerKind::parse);
    let pruner = s.opt_choice("pruner", "a pruner", PrunerKind::ACCEPTED, PrunerKind::parse);
    let population_size_given = s.map.get("population_size").is_some();
    let population_size = s.count_or("population_size", 2, 50);
    let n_startup_trials = s.count_or("n_startup_trials", 0, 10);
    let tpe_multivariate = s.map.get("tpe_multivariate").is_some().then(|| s.bool_or("tpe_multivariate", false));
    let workers = s.opt_count("workers", 1);
    let storage = s.opt_string("storage", "a storage URL");
    let study_name = s.opt_string("study_name", "a study name");
    let batch_size = s.opt_count_in("batch_size", 1, MAX_BATCH).unwrap_or(128);
    let learning_rate = s.number_or("learning_rate", 1e-3, "a number > 0", |v| v > 0.0);
    let default_patience = if model_type == Some(ModelType::Mlp) { 3 } else { 5 };
    let patience_key = if s.map.get("patience").is_some() { "patience" } else { "early_stopping_patience" };
    let early_stopping_patience = s.count_or(patience_key, 0, default_patience);
    let constraints = {
        let mut section = Section::open(&mut *s.ctx, &mut s.map, "constraints");
        let mut constraints = Vec::new();
        for metric in ConstraintMetric::ALL {
            let accepted = "a number ≥ 0 (the metric's upper bound)";
            if let Some(bound) = section.opt_number(metric.name(), accepted, |v| v >= 0.0) {
                constraints.push((metric, bound));
            }
        }
        for (key, line) in section.map.unasked() {
            let hint =
                section.map.suggestion(&key).map(|known| format!(" (did you mean '{known}'?)")).unwrap_or_default();
            let message =
                format!("'{key}' is not a constrainable metric{hint}; accepted: {}", ConstraintMetric::ACCEPTED);
            section.ctx.error(section.path(&key), Some(line), message);
            section.map.get_raw(&key);
        }
        section.finish();
        constraints
    };
    let min_layers = s.opt_count_in("min_layers", 1, MAX_LAYERS);
    let max_layers = s.opt_count_in("max_layers", 1, MAX_LAYERS);
    if let (Some(min), Some(max)) = (min_layers, max_layers.or(Some(5)))
        && min > max
    {
        let (key, message) = if max_layers.is_some() {
            ("max_layers", format!("{max} is less than search.min_layers ({min}); accepted: a whole number ≥ {min}"))
        } else {
            ("min_layers", format!("{min} is more than max_layers (default 5); accepted: 1 to 5, or set max_layers"))
        };
        let line = s.map.line_of(key);
        s.ctx.error(s.path(key), line, message);
    }
    let timeout = s.opt_duration("timeout");
    let timeout_hard = s.opt_duration("timeout_hard");
    if let (Some(soft), Some(hard)) = (timeout, timeout_hard)
        && hard < soft
    {
        let message = format!(
            "{} is shorter than search.timeout ({}); accepted: a hard limit at least as long as the time budget \
             (both count from the start of the search)",
            crate::config::format_duration(hard),
            crate::config::format_duration(soft)
        );
        let line = s.map.line_of("timeout_hard");
        s.ctx.error(s.path("timeout_hard"), line, message);
    }
    s.finish();
    SearchConfig {
        timeout,
        timeout_hard,
        model_type: model_type.unwrap_or(ModelType::Mlp),
        n_trials,
        epochs,
        n_folds,
        use_hardware_metrics,
        objectives,
        seed,
        pruner: pruner.unwrap_or(PrunerKind::None),
        sampler: sampler.unwrap_or(SamplerKind::Auto),
        population_size,
        population_size_given,
        n_startup_trials,
        tpe_multivariate,
        workers,
        storage,
        study_name,
        batch_size,
        learning_rate,
        early_stopping_patience,
        min_layers: min_layers.unwrap_or(2),
        max_layers: max_layers.unwrap_or(5),
        constraints,
    }
}

/// `objective_names` with `maximize_flags`; SNAC-Pack's objectives when absent.
/// Without `maximize_flags`, accuracy is maximised and everything else minimised.
fn objectives(s: &mut Section<'_, '_, '_>, use_hardware_metrics: bool) -> Vec<(Objective, bool)> {
    let names_field = s.map.get("objective_names");
    let flags_field = s.map.get("maximize_flags");
    let (names_path, flags_path) = (s.path("objective_names"), s.path("maximize_flags"));

    let mut names: Vec<Option<Objective>> = Vec::new();
    if let Some(field) = names_field {
        let items = s.ctx.list(&names_path, field, &format!("a list of objectives: {}", Objective::ACCEPTED));
        let items = items.unwrap_or_default();
        if items.is_empty() && matches!(field.node.data, YamlDataOwned::Sequence(_)) {
            s.ctx.error(&names_path, Some(field.line), format!("the list is empty; accepted: {}", Objective::ACCEPTED));
        }
        for (path, item) in &items {
            let objective = s.ctx.choice(path, *item, "an objective", Objective::ACCEPTED, Objective::parse);
            if let Some(objective) = objective {
                if let Some(first) = names.iter().position(|seen| *seen == Some(objective)) {
                    let message = format!(
                        "'{}' is listed twice (also {names_path}[{first}]); accepted: each objective once",
                        objective.name()
                    );
                    s.ctx.error(path, Some(item.line), message);
                } else if objective.is_hardware() && !use_hardware_metrics {
                    let message = format!(
                        "'{}' needs a hardware estimate; accepted: set search.use_hardware_metrics: true, \
                         or use one of performance_metric, bops, params",
                        objective.name()
                    );
                    s.ctx.error(path, Some(item.line), message);
                }
            }
            names.push(objective);
        }
    }

    let mut flags: Vec<Option<bool>> = Vec::new();
    if let Some(field) = flags_field {
        let items = s.ctx.list(&flags_path, field, "a list of true/false, one per objective").unwrap_or_default();
        for (path, item) in items {
            flags.push(s.ctx.boolean(&path, item));
        }
        match names_field {
            None => {
                let message = "is given without objective_names; accepted: objective_names and maximize_flags together";
                s.ctx.error(&flags_path, Some(field.line), message);
            }
            Some(_) if flags.len() != names.len() => {
                let entries = if flags.len() == 1 { "entry" } else { "entries" };
                let message = format!(
                    "has {} {entries} but objective_names has {}; accepted: one true/false per objective",
                    flags.len(),
                    names.len()
                );
                s.ctx.error(&flags_path, Some(field.line), message);
            }
            Some(_) => {}
        }
    }

    if names_field.is_none() {
        let mut objectives = vec![(Objective::PerformanceMetric, true), (Objective::Bops, false)];
        if use_hardware_metrics {
            objectives.extend([(Objective::AvgResource, false), (Objective::ClockCycles, false)]);
        }
        return objectives;
    }
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let objective = (*name)?;
            let maximize = match flags_field {
                Some(_) => flags.get(i).copied().flatten().unwrap_or(false),
                None => objective == Objective::PerformanceMetric,
            };
            Some((objective, maximize))
        })
        .collect()
}

fn parse_block_type(text: &str) -> Option<String> {
    let key = text.to_lowercase().replace(['_', '-'], "");
    BLOCK_TYPES.iter().find(|name| name.to_lowercase() == key).map(|name| name.to_string())
}

/// The search_space section, and the line of its `block_types` key. With
/// `exportable_only: true`, the choices the export refuses are dropped
/// (`config::exportable::restrict`).
fn search_space(ctx: &mut Ctx<'_>, root: &mut Map<'_>, model_type: ModelType) -> (SearchSpaceConfig, Option<usize>) {
    let mut s = Section::open(ctx, root, "search_space");
    let mlp_width_space = s.width_list_or("mlp_width_space", &[8, 16, 32, 64, 128]);
    let act_space = s.list_or(
        "act_space",
        vec![Activation::Relu, Activation::Tanh, Activation::Sigmoid],
        "activations",
        |ctx, path, field| {
            let parse = |text: &str| Activation::parse(text).filter(|act| *act != Activation::Softmax);
            ctx.choice(path, field, "a hidden-layer activation", HIDDEN_ACTIVATIONS, parse)
        },
    );
    let norm_space = s.list_or("norm_space", vec![Norm::None, Norm::Batch], "norms", |ctx, path, field| {
        if is_null(field.node) {
            return Some(Norm::None);
        }
        ctx.choice(path, field, "a norm", Norm::ACCEPTED, Norm::parse)
    });
    let block_types_line = s.map.get("block_types").map(|field| field.line);
    let block_types = s.list_or("block_types", vec!["MLP".to_string()], "block types", |ctx, path, field| {
        if is_null(field.node) {
            return Some("None".to_string());
        }
        ctx.choice(path, field, "a block type", &BLOCK_TYPES.join(", "), parse_block_type)
    });
    let num_blocks = s.count_or("num_blocks", 1, 3);
    let initial_img_size = s.opt_count("initial_img_size", 1);
    let output_dim = s.opt_count("output_dim", 1);
    let output_activation = s
        .opt_choice("output_activation", "an activation", Activation::ACCEPTED, Activation::parse)
        .unwrap_or(Activation::Softmax);
    let channel_space = s.width_list_or("channel_space", &[16, 32]);
    let kernel_space = s.positive_list_or("kernel_space", &[3]);
    let attention_scale = s.bool_or("attention_scale", false);
    let conv_attn_hidden_channel_space = {
        let mut conv_attn = Section::open(&mut *s.ctx, &mut s.map, "conv_attn");
        let space = conv_attn.width_list_or("hidden_channel_space", &[4]);
        conv_attn.finish();
        space
    };
    let phi_width_space = s.width_list_or("phi_width_space", &mlp_width_space);
    let rho_width_space = s.width_list_or("rho_width_space", &mlp_width_space);
    let phi_layers = s.layer_range_or("phi_layers", 1, LayerRange { min: 1, max: 3 });
    let rho_layers = s.layer_range_or("rho_layers", 0, LayerRange { min: 1, max: 2 });
    let aggregation_space = s.list_or(
        "aggregation_space",
        vec![Aggregation::Mean, Aggregation::Max],
        "aggregations",
        |ctx, path, field| ctx.choice(path, field, "an aggregation", Aggregation::ACCEPTED, Aggregation::parse),
    );
    let exportable_line = s.map.get("exportable_only").map(|field| field.line);
    let exportable_only = s.bool_or("exportable_only", false);
    s.finish();
    let mut config = SearchSpaceConfig {
        mlp_width_space,
        act_space,
        norm_space,
        block_types,
        num_blocks,
        initial_img_size,
        output_dim,
        output_activation,
        channel_space,
        kernel_space,
        conv_attn_hidden_channel_space,
        attention_scale,
        phi_width_space,
        rho_width_space,
        phi_layers,
        rho_layers,
        aggregation_space,
        exportable_only,
        dropped_for_export: Vec::new(),
    };
    if exportable_only {
        match crate::config::exportable::restrict(&mut config, model_type) {
            Ok(dropped) => config.dropped_for_export = dropped,
            Err(message) => ctx.error("search_space.exportable_only", exportable_line, format!("true {message}")),
        }
    }
    (config, block_types_line)
}

fn parse_board(text: &str) -> Option<String> {
    let key = text.to_lowercase().replace('_', "-");
    BOARDS.iter().find(|board| **board == key || board.replace('-', "") == key).map(|board| board.to_string())
}

fn parse_strategy(text: &str) -> Option<String> {
    match text.to_lowercase().as_str() {
        "latency" => Some("Latency".to_string()),
        "resource" => Some("Resource".to_string()),
        _ => None,
    }
}

/// `ap_fixed<W,I>` with `0 < I ≤ W ≤ 1024`: returns (W, I).
pub fn parse_precision(text: &str) -> Option<(u32, u32)> {
    let inner = text.trim().strip_prefix("ap_fixed<")?.strip_suffix('>')?;
    let (width, integer) = inner.split_once(',')?;
    let (width, integer): (u32, u32) = (width.trim().parse().ok()?, integer.trim().parse().ok()?);
    (integer > 0 && integer <= width && width <= 1024).then_some((width, integer))
}

fn hls(ctx: &mut Ctx<'_>, root: &mut Map<'_>) -> HlsConfig {
    let mut s = Section::open(ctx, root, "hls_config");
    let board = s.opt_choice("board", "a board", &BOARDS.join(", "), parse_board).unwrap_or_else(|| "zcu102".into());
    let mut model = Section::open(&mut *s.ctx, &mut s.map, "model");
    let precision = model
        .opt_choice(
            "precision",
            "a fixed-point precision",
            "ap_fixed<W,I> with 0 < I ≤ W ≤ 1024, e.g. ap_fixed<8,3>",
            |text| parse_precision(text).map(|_| text.trim().to_string()),
        )
        .unwrap_or_else(|| "ap_fixed<8,3>".into());
    let reuse_factor = model.count_or("reuse_factor", 1, 1);
    let strategy = model
        .opt_choice("strategy", "a strategy", "Latency, Resource", parse_strategy)
        .unwrap_or_else(|| "Latency".into());
    model.finish();
    let estimator =
        s.opt_choice("estimator", "an estimator", EstimatorKind::ACCEPTED, EstimatorKind::parse).unwrap_or_default();
    let clock_period = s.number_or(
        "clock_period",
        DEFAULT_CLOCK_PERIOD_NS,
        "a clock period in ns from 0.5 to 1000 (hls4ml's ClockPeriod, default 5)",
        |ns| (0.5..=1000.0).contains(&ns),
    );
    let io_type = s.opt_choice("io_type", "an io type", IoType::ACCEPTED, IoType::parse).unwrap_or_default();
    let backend = s.opt_choice("backend", "an hls4ml backend", Backend::ACCEPTED, Backend::parse).unwrap_or_default();
    let mut rule4ml = Section::open(&mut *s.ctx, &mut s.map, "rule4ml");
    let default_row = Rule4mlRow::default();
    let one_of = |known: &'static [&'static str]| {
        move |text: &str| known.iter().find(|version| **version == text.trim()).map(|version| version.to_string())
    };
    let rule4ml_row = Rule4mlRow {
        hls4ml_version: rule4ml
            .opt_choice("hls4ml_version", "an hls4ml version", &HLS4ML_VERSIONS.join(", "), one_of(&HLS4ML_VERSIONS))
            .unwrap_or(default_row.hls4ml_version),
        vivado_version: rule4ml
            .opt_choice("vivado_version", "a Vivado version", &VIVADO_VERSIONS.join(", "), one_of(&VIVADO_VERSIONS))
            .unwrap_or(default_row.vivado_version),
    };
    rule4ml.finish();
    s.finish();
    HlsConfig { board, precision, reuse_factor, strategy, clock_period, io_type, backend, estimator, rule4ml_row }
}

/// Reads `total_bits` and `int_bits` from a map; `None` if either is bad.
fn precision_pair(s: &mut Section<'_, '_, '_>) -> Option<PrecisionPair> {
    let total_bits = match s.map.get("total_bits") {
        Some(field) => s.ctx.int_in(&s.path("total_bits"), field, 1, MAX_BITS),
        None => {
            s.map.require(s.ctx, "total_bits", &format!("a whole number from 1 to {MAX_BITS}"));
            None
        }
    };
    let int_bits = match s.map.get("int_bits") {
        Some(field) => s.ctx.int_in(&s.path("int_bits"), field, 0, MAX_BITS),
        None => {
            s.map.require(s.ctx, "int_bits", "a whole number ≥ 0, below total_bits");
            None
        }
    };
    let (total_bits, int_bits) = (total_bits?, int_bits?);
    if int_bits >= total_bits {
        let message = format!(
            "{int_bits} is not below total_bits ({total_bits}); accepted: 0 ≤ int_bits < total_bits \
             (the sign bit is not counted in int_bits)"
        );
        let line = s.map.line_of("int_bits");
        s.ctx.error(s.path("int_bits"), line, message);
        return None;
    }
    Some(PrecisionPair { total_bits: total_bits as u32, int_bits: int_bits as u32 })
}

fn local_search(ctx: &mut Ctx<'_>, root: &mut Map<'_>) -> Option<LocalSearchConfig> {
    root.get("local_search")?;
    let mut s = Section::open(ctx, root, "local_search");
    let qat_epochs = s.count_or("qat_epochs", 0, 2);
    let pruning_iterations = s.opt_count_in("pruning_iterations", 0, MAX_PRUNING_ITERATIONS).unwrap_or(5);
    let pruning_epochs = s.count_or("pruning_epochs", 1, 2);
    let pruning_rate = s.number_or("pruning_rate", 0.8, "a number between 0 and 1 (exclusive)", |v| v > 0.0 && v < 1.0);
    let mode = s.opt_choice("mode", "a local-search mode", LocalSearchMode::ACCEPTED, LocalSearchMode::parse);
    let precision = s.opt_choice("precision", "a precision mode", PrecisionMode::ACCEPTED, PrecisionMode::parse);
    let accuracy_tolerance = s.number_or(
        "accuracy_tolerance",
        DEFAULT_ACCURACY_TOLERANCE,
        "a fraction from 0 to 1 (0.005 = half a point of accuracy)",
        |v| (0.0..=1.0).contains(&v),
    );
    let precision_objective =
        s.opt_choice("precision_objective", "an objective", PrecisionObjective::ACCEPTED, PrecisionObjective::parse);
    let min_bits = s.opt_count_in("min_bits", 1, MAX_BITS as usize).map_or(DEFAULT_MIN_BITS, |n| n as u32);
    let reference_bits = s.opt_count_in("reference_bits", 1, MAX_BITS as usize).map(|n| n as u32);
    let defaults: Vec<PrecisionPair> =
        DEFAULT_PRECISION_PAIRS.iter().map(|&(total_bits, int_bits)| PrecisionPair { total_bits, int_bits }).collect();
    let mut seen: Vec<(PrecisionPair, String)> = Vec::new();
    let precision_pairs = s.list_or("precision_pairs", defaults, "{total_bits, int_bits} maps", |ctx, path, field| {
        let map = ctx.map(path, Some(field.line), Some(field));
        let mut item = Section { ctx: &mut *ctx, map };
        let pair = if item.map.valid { precision_pair(&mut item) } else { None };
        item.finish();
        let pair = pair?;
        if let Some((_, first)) = seen.iter().find(|(p, _)| *p == pair) {
            let message = format!(
                "{{total_bits: {}, int_bits: {}}} is listed twice (also {first}); accepted: each pair once",
                pair.total_bits, pair.int_bits
            );
            ctx.error(path, Some(field.line), message);
            return None;
        }
        seen.push((pair, path.to_string()));
        Some(pair)
    });
    if let Some(bits) = reference_bits
        && !precision_pairs.iter().any(|p| p.total_bits == bits)
    {
        let listed: Vec<String> = precision_pairs.iter().map(|p| p.total_bits.to_string()).collect();
        let message = format!(
            "{bits} is not the total_bits of any precision pair; accepted: one of {}",
            if listed.is_empty() { "the pairs' total_bits (there are none)".to_string() } else { listed.join(", ") }
        );
        let line = s.map.line_of("reference_bits");
        s.ctx.error(s.path("reference_bits"), line, message);
    }
    s.finish();
    Some(LocalSearchConfig {
        qat_epochs,
        pruning_iterations,
        pruning_epochs,
        pruning_rate,
        precision_pairs,
        mode: mode.unwrap_or(LocalSearchMode::Combined),
        precision: precision.unwrap_or(PrecisionMode::Uniform),
        accuracy_tolerance,
        precision_objective: precision_objective.unwrap_or(PrecisionObjective::AvgResource),
        min_bits,
        reference_bits,
    })
}

fn output(ctx: &mut Ctx<'_>, root: &mut Map<'_>, file: &Path) -> OutputConfig {
    let mut s = Section::open(ctx, root, "output");
    let results_dir = s.opt_string("results_dir", "a directory").map(PathBuf::from).unwrap_or_else(|| {
        let stem = file.file_stem().and_then(|stem| stem.to_str()).unwrap_or("experiment");
        Path::new("./results").join(stem)
    });
    s.finish();
    OutputConfig { results_dir }
}

fn synthesis(
    ctx: &mut Ctx<'_>,
    root: &mut Map<'_>,
    local_search: Option<&LocalSearchConfig>,
    output: &OutputConfig,
) -> Option<SynthesisConfig> {
    root.get("synthesis")?;
    let mut s = Section::open(ctx, root, "synthesis");
    let pair = if s.map.valid { precision_pair(&mut s) } else { None };
    let hls_output_dir = s
        .opt_string("hls_output_dir", "a directory")
        .map(PathBuf::from)
        .unwrap_or_else(|| output.results_dir.join("hls_project"));
    if let (Some(pair), Some(local_search)) = (pair, local_search)
        && !local_search.precision_pairs.contains(&pair)
    {
        let listed: Vec<String> =
            local_search.precision_pairs.iter().map(|p| format!("{}/{}", p.total_bits, p.int_bits)).collect();
        let message = format!(
            "{}/{} (total_bits/int_bits) is not one of local_search.precision_pairs; accepted: {}",
            pair.total_bits,
            pair.int_bits,
            listed.join(", ")
        );
        let line = s.map.line_of("total_bits");
        s.ctx.error(join(&s.map.path, "total_bits"), line, message);
    }
    s.finish();
    let pair = pair.unwrap_or(PrecisionPair { total_bits: 8, int_bits: 3 });
    Some(SynthesisConfig { total_bits: pair.total_bits, int_bits: pair.int_bits, hls_output_dir })
}
