//! Tests for the experiment parser: the tutorial files, defaults, and one test
//! per kind of error, each checking key path, line, bad value and accepted set.

use super::*;
use crate::arch::{Activation, Aggregation, Norm};
use crate::config::{DatasetName, LayerRange, ModelType, Objective, PrecisionPair, SamplerKind};
use crate::estimate::{Backend, EstimatorKind, IoType, Rule4mlRow};

const MINIMAL: &str = "dataset: {name: digits}\nsearch: {model_type: mlp}\n";

fn parse(text: &str) -> Result<Experiment, ConfigErrors> {
    load_str(text, Path::new("/configs/exp.yaml"))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.errors,
    }
}

/// The only error of `text`; checks its path and line, returns its message.
fn single_error(text: &str, key_path: &str, line: usize) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    assert_eq!(error.key_path, key_path, "{error:?}");
    assert_eq!(error.line, Some(line), "{error:?}");
    error.message.clone()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message {message:?} should mention {part:?}");
    }
}

/// The minimal config with `extra` appended (lines 3 and on).
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

// ---------------------------------------------------------------- good files

#[test]
fn minimal_config_gets_defaults() {
    let experiment = parse(MINIMAL).unwrap();
    assert_eq!(experiment.dataset.name, DatasetName::Digits);
    assert!(experiment.dataset.flatten && experiment.dataset.one_hot && !experiment.dataset.normalize);
    assert_eq!(experiment.dataset.validation_split, 0.2);
    let search = &experiment.search;
    assert_eq!(search.model_type, ModelType::Mlp);
    assert_eq!((search.n_trials, search.epochs, search.n_folds), (10, 10, 1));
    assert!(!search.use_hardware_metrics);
    assert_eq!(search.objectives, vec![(Objective::PerformanceMetric, true), (Objective::Bops, false)]);
    assert_eq!((search.seed, search.sampler, search.population_size), (42, SamplerKind::Auto, 50));
    assert_eq!((search.n_startup_trials, search.population_size_given, search.tpe_multivariate), (10, false, None));
    assert_eq!((search.workers, search.storage.as_deref(), search.study_name.as_deref()), (None, None, None));
    assert_eq!((search.batch_size, search.learning_rate), (128, 1e-3));
    assert_eq!(search.early_stopping_patience, 3);
    assert_eq!((search.min_layers, search.max_layers), (2, 5));
    let space = &experiment.search_space;
    assert_eq!(space.mlp_width_space, vec![8, 16, 32, 64, 128]);
    assert_eq!(space.act_space, vec![Activation::Relu, Activation::Tanh, Activation::Sigmoid]);
    assert_eq!(space.norm_space, vec![Norm::None, Norm::Batch]);
    assert_eq!(space.block_types, vec!["MLP"]);
    assert_eq!((space.num_blocks, space.initial_img_size, space.output_dim), (3, None, None));
    assert_eq!(space.output_activation, Activation::Softmax);
    assert_eq!((space.channel_space.clone(), space.kernel_space.clone()), (vec![16, 32], vec![3]));
    assert_eq!(space.conv_attn_hidden_channel_space, vec![4]);
    assert!(!space.attention_scale);
    let hls = &experiment.hls;
    assert_eq!((hls.board.as_str(), hls.precision.as_str()), ("zcu102", "ap_fixed<8,3>"));
    assert_eq!((hls.reuse_factor, hls.strategy.as_str()), (1, "Latency"));
    assert!(experiment.local_search.is_none() && experiment.synthesis.is_none());
    assert_eq!(experiment.output.results_dir, Path::new("./results/exp"));
    assert!(experiment.unused_keys.is_empty());
}

#[test]
fn block_mode_patience_and_hardware_default_objectives() {
    let experiment =
        parse("dataset: {name: mnist}\nsearch: {model_type: block, use_hardware_metrics: true}\n").unwrap();
    assert_eq!(experiment.search.early_stopping_patience, 5);
    let names: Vec<_> = experiment.search.objectives.iter().map(|(o, m)| (o.name(), *m)).collect();
    assert_eq!(
        names,
        vec![("performance_metric", true), ("bops", false), ("avg_resource", false), ("clock_cycles", false)]
    );
}

#[test]
fn extensions_are_read() {
    let experiment = parse(&with(
        "search_space: {attention_scale: true, block_types: [conv_attn, none, null]}\n\
         dummy_section: 1\n",
    ))
    .unwrap();
    assert_eq!(experiment.search_space.block_types, vec!["ConvAttn", "None", "None"]);
    assert!(experiment.search_space.attention_scale);
    let text = "dataset: {name: digits}\nsearch:\n  model_type: MLP\n  seed: 7\n  sampler: random\n  \
                population_size: 8\n  workers: 2\n  storage: sqlite:///x.db\n  study_name: s\n  batch_size: 32\n  \
                learning_rate: 0.01\n  patience: 0\n  min_layers: 1\n  max_layers: 1\n  objective_names: [params, accuracy]\n  \
                tpe_multivariate: false\n";
    let search = parse(text).unwrap().search;
    assert_eq!(search.tpe_multivariate, Some(false));
    assert_eq!(
        (search.seed, search.sampler, search.population_size, search.workers),
        (7, SamplerKind::Random, 8, Some(2))
    );
    assert_eq!((search.storage.as_deref(), search.study_name.as_deref()), (Some("sqlite:///x.db"), Some("s")));
    assert_eq!((search.batch_size, search.learning_rate, search.early_stopping_patience), (32, 0.01, 0));
    assert_eq!((search.min_layers, search.max_layers), (1, 1));
    // Without maximize_flags, accuracy is maximised and the rest minimised.
    assert_eq!(search.objectives, vec![(Objective::Params, false), (Objective::PerformanceMetric, true)]);
}

#[test]
fn unknown_keys_are_listed_not_errors() {
    let text = with("dummy: 1\nsearch_space:\n  conv_attn: {hidden_channel_space: [2], extra: x}\n  foo: [1]\n");
    let experiment = parse(&text).unwrap();
    // In file order.
    let listed: Vec<String> = experiment.unused_keys.iter().map(ToString::to_string).collect();
    assert_eq!(listed, ["dummy", "search_space.conv_attn.extra", "search_space.foo"]);
    assert_eq!(experiment.unused_keys.iter().map(|key| key.line).collect::<Vec<_>>(), [3, 5, 6]);
    assert!(experiment.unused_keys.iter().all(|key| key.suggestion.is_none()), "{:?}", experiment.unused_keys);
}

#[test]
fn misspelt_keys_stay_notes_with_the_key_they_resemble() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  n_trails: 5\n  epoch: 2\n\
                serach_space: {}\nlocal_search:\n  pruning_rte: 0.5\n";
    let experiment = parse(text).unwrap();
    // The misspelt keys are not read: their defaults apply.
    assert_eq!((experiment.search.n_trials, experiment.search.epochs), (10, 10));
    let keys: Vec<(&str, usize, Option<&str>)> =
        experiment.unused_keys.iter().map(|k| (k.path.as_str(), k.line, k.suggestion.as_deref())).collect();
    assert_eq!(
        keys,
        [
            ("search.n_trails", 4, Some("n_trials")),
            ("search.epoch", 5, Some("epochs")),
            ("serach_space", 6, Some("search_space")),
            ("local_search.pruning_rte", 8, Some("pruning_rate")),
        ]
    );
    assert_eq!(
        experiment.unused_keys[0].note(Path::new("t1.yaml")),
        "t1.yaml:4: key 'search.n_trails' is not used by snac (did you mean 'n_trials'?)"
    );
    // A key that is written is no suggestion for another (both n_trials and n_trails).
    let experiment = parse("dataset: {name: digits}\nsearch: {model_type: mlp, n_trials: 3, n_trails: 5}\n").unwrap();
    assert_eq!(experiment.unused_keys[0].suggestion, None);
}

#[test]
fn bad_choices_suggest_the_accepted_name_they_resemble() {
    let message = single_error("dataset: {name: digits}\nsearch: {model_type: mpl}\n", "search.model_type", 2);
    assert_eq!(message, "'mpl' is not a model type (did you mean 'mlp'?); accepted: mlp, block, deepsets");
    let message = single_error(&with("hls_config: {board: zcu012}\n"), "hls_config.board", 3);
    assert_mentions(&message, &["'zcu012'", "did you mean 'zcu102'?", "accepted: zcu102, pynq-z2"]);
    let message = single_error(&with("search_space:\n  act_space: [relu, tahn]\n"), "search_space.act_space[1]", 4);
    assert_mentions(&message, &["'tahn'", "did you mean 'tanh'?", "accepted: relu"]);
    let message = single_error("dataset: {name: mnistt}\nsearch: {model_type: mlp}\n", "dataset.name", 1);
    assert_mentions(&message, &["'mnistt'", "did you mean 'mnist'?", "fashion_mnist"]);
    // softmax is in the accepted text but not accepted for hidden layers: never suggested there.
    let message = single_error(&with("search_space:\n  act_space: [softmx]\n"), "search_space.act_space[0]", 4);
    assert!(!message.contains("did you mean"), "{message}");
    // Far from every name: no suggestion.
    let message =
        single_error("dataset: {name: digits}\nsearch: {model_type: mlp, sampler: cmaes}\n", "search.sampler", 2);
    assert_eq!(message, "'cmaes' is not a sampler; accepted: auto, tpe, nsga2, random");
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  constraints: {lut_pc: 5}\n";
    let message = single_error(text, "search.constraints.lut_pc", 4);
    assert_mentions(&message, &["'lut_pc'", "did you mean 'lut_pct'?", "accepted: lut, ff"]);
}

#[test]
fn dataset_paths_resolve_against_the_config_directory() {
    let text = "dataset:\n  name: file\n  train_file: train.npz\n  val_file: /abs/val.csv\n  data_dir: ../data\n\
                search: {model_type: mlp}\noutput: {results_dir: out/here}\n";
    let experiment = parse(text).unwrap();
    assert_eq!(experiment.dataset.train_file.as_deref(), Some(Path::new("/configs/train.npz")));
    assert_eq!(experiment.dataset.val_file.as_deref(), Some(Path::new("/abs/val.csv")));
    assert_eq!(experiment.dataset.data_dir.as_deref(), Some(Path::new("/configs/../data")));
    // results_dir stays as written (relative to the current directory).
    assert_eq!(experiment.output.results_dir, Path::new("out/here"));
    // A bare file name has no directory to resolve against.
    let experiment = load_str(text, Path::new("exp.yaml")).unwrap();
    assert_eq!(experiment.dataset.train_file.as_deref(), Some(Path::new("train.npz")));
}

#[test]
fn empty_values_take_defaults() {
    let experiment = parse(&with("search_space:\n  mlp_width_space:\n  act_space: ~\nlocal_search:\n")).unwrap();
    assert_eq!(experiment.search_space.mlp_width_space, vec![8, 16, 32, 64, 128]);
    assert!(experiment.local_search.is_none());
    let experiment = parse(&with("local_search: {qat_epochs: 0}\n")).unwrap();
    let local = experiment.local_search.unwrap();
    assert_eq!((local.qat_epochs, local.pruning_iterations, local.pruning_epochs), (0, 5, 2));
    assert_eq!(local.pruning_rate, 0.8);
    assert_eq!(local.precision_pairs.len(), 4);
}

/// `../../../shared` from this crate, else `$SNAC_SHARED_DIR`.
fn shared_dir() -> Option<PathBuf> {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    let candidates =
        [Some(PathBuf::from("/work/shared")), Some(beside), std::env::var_os("SNAC_SHARED_DIR").map(PathBuf::from)];
    candidates.into_iter().flatten().find(|dir| dir.join("peer-configs").is_dir())
}

fn peer_config(name: &str) -> Option<Experiment> {
    let Some(dir) = shared_dir() else {
        eprintln!("skipping: no shared/peer-configs (set SNAC_SHARED_DIR)");
        return None;
    };
    let path = dir.join("peer-configs").join(name);
    match load(&path) {
        Ok(experiment) => Some(experiment),
        Err(errors) => panic!("{name} should parse:\n{errors}"),
    }
}

fn pairs(list: &[(u32, u32)]) -> Vec<PrecisionPair> {
    list.iter().map(|&(total_bits, int_bits)| PrecisionPair { total_bits, int_bits }).collect()
}

#[test]
fn tutorial_1_mlp_mnist() {
    let Some(t1) = peer_config("t1_config.yaml") else { return };
    assert_eq!(t1.dataset.name, DatasetName::Mnist);
    assert_eq!((t1.dataset.resize_val, t1.dataset.subset_size), (Some(8), Some(10000)));
    assert_eq!(t1.search.model_type, ModelType::Mlp);
    assert_eq!((t1.search.n_trials, t1.search.epochs, t1.search.n_folds), (3, 2, 1));
    assert!(t1.search.use_hardware_metrics);
    assert_eq!(
        t1.search.objectives,
        vec![
            (Objective::PerformanceMetric, true),
            (Objective::Bops, false),
            (Objective::AvgResource, false),
            (Objective::ClockCycles, false)
        ]
    );
    assert_eq!(t1.search_space.norm_space, vec![Norm::None, Norm::Batch]);
    assert_eq!(t1.search_space.initial_img_size, Some(8));
    assert_eq!(t1.local_search.as_ref().unwrap().precision_pairs, pairs(&[(16, 6), (8, 3), (6, 2), (4, 1)]));
    assert_eq!(t1.output.results_dir, Path::new("./results/tutorial1_mlp"));
    assert!(t1.unused_keys.is_empty(), "{:?}", t1.unused_keys);
}

#[test]
fn tutorial_2_blocks_fashion_mnist() {
    let Some(t2) = peer_config("t2_config.yaml") else { return };
    assert_eq!(t2.dataset.name, DatasetName::FashionMnist);
    assert!(!t2.dataset.flatten);
    assert_eq!((t2.search.model_type, t2.search.n_folds), (ModelType::Block, 3));
    assert_eq!(t2.search.early_stopping_patience, 5);
    assert_eq!(t2.search.objectives, vec![(Objective::PerformanceMetric, true), (Objective::Bops, false)]);
    assert_eq!(t2.search_space.block_types, vec!["Conv", "ConvAttn", "MLP", "None"]);
    assert_eq!(t2.search_space.act_space, vec![Activation::Relu, Activation::Gelu, Activation::LeakyRelu]);
    assert_eq!(t2.search_space.kernel_space, vec![1, 3, 5]);
    assert_eq!(t2.search_space.conv_attn_hidden_channel_space, vec![4, 8, 16]);
    assert_eq!(t2.search_space.num_blocks, 4);
    let local = t2.local_search.unwrap();
    assert_eq!((local.qat_epochs, local.pruning_iterations, local.pruning_epochs), (10, 10, 10));
    assert_eq!(local.pruning_rate, 0.7);
}

#[test]
fn tutorial_3_qubit() {
    let Some(t3) = peer_config("t3_config.yaml") else { return };
    let dataset = &t3.dataset;
    assert_eq!(dataset.name, DatasetName::Qubit);
    assert_eq!((dataset.start_location, dataset.window_size, dataset.num_classes), (Some(100), Some(400), Some(2)));
    assert!(dataset.normalize);
    let config_dir = t3.source.parent().unwrap();
    assert_eq!(dataset.data_dir.as_deref(), Some(config_dir.join("../../data/qubit/data").as_path()));
    assert_eq!(t3.search_space.norm_space, vec![Norm::Batch, Norm::None]);
    assert_eq!(t3.search_space.block_types, vec!["MLP", "None"]);
    assert_eq!(t3.hls.reuse_factor, 8);
    assert_eq!(t3.local_search.unwrap().precision_pairs, pairs(&[(16, 6), (8, 3), (4, 1)]));
    let synthesis = t3.synthesis.unwrap();
    assert_eq!((synthesis.total_bits, synthesis.int_bits), (8, 3));
    assert_eq!(synthesis.hls_output_dir, Path::new("./results/tutorial3_qubit_agent_full/hls_project"));
}

// ---------------------------------------------------------------- one error each

#[test]
fn missing_dataset_name() {
    let message = single_error("dataset:\n  flatten: true\nsearch: {model_type: mlp}\n", "dataset.name", 1);
    assert_mentions(&message, &["required", "mnist, fashion_mnist, digits, qubit, file"]);
    // With no dataset section at all there is no line to point at.
    let errors = errors("search: {model_type: mlp}\n");
    assert_eq!((errors[0].key_path.as_str(), errors[0].line), ("dataset.name", None));
}

#[test]
fn missing_model_type() {
    let message = single_error("dataset: {name: digits}\nsearch: {n_trials: 3}\n", "search.model_type", 2);
    assert_mentions(&message, &["required", "mlp, block"]);
}

#[test]
fn unknown_dataset_name() {
    let message = single_error("dataset:\n  name: cifar10\nsearch: {model_type: mlp}\n", "dataset.name", 2);
    assert_mentions(&message, &["'cifar10'", "not a dataset", "mnist, fashion_mnist"]);
}

#[test]
fn unknown_model_type() {
    let message = single_error("dataset: {name: digits}\nsearch: {model_type: cnn}\n", "search.model_type", 2);
    assert_mentions(&message, &["'cnn'", "mlp, block"]);
}

#[test]
fn long_values_and_keys_are_clipped_in_messages() {
    let long = "n".repeat(20 << 20);
    let text = format!("dataset: {{name: digits}}\nsearch:\n  model_type: mlp\n  sampler: {long}\n");
    let message = single_error(&text, "search.sampler", 4);
    assert!(message.len() < 400, "{} bytes", message.len());
    assert_mentions(&message, &[&format!("{}… ({} bytes)", "n".repeat(80), 20 << 20), "accepted: auto, tpe"]);
    // An unknown key of that length.
    // A long unknown key (YAML allows up to 1024 characters) is listed (as unused) clipped.
    let unused = parse(&format!("{MINIMAL}{}: 1\n", "k".repeat(1000))).unwrap().unused_keys;
    assert_eq!(
        unused.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!("{}… (1000 bytes)", "k".repeat(80))]
    );
    // Short values are whole.
    assert_eq!(reader::clip("nsga3"), "nsga3");
    assert_eq!(reader::clip(&"é".repeat(81)), format!("{}… (162 bytes)", "é".repeat(80)));
}

#[test]
fn bad_sampler() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  sampler: nsga3\n";
    let message = single_error(text, "search.sampler", 4);
    assert_mentions(&message, &["'nsga3'", "not a sampler", "auto, tpe, nsga2, random"]);
}

#[test]
fn objective_names_and_flags_length_mismatch() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  objective_names: [performance_metric, bops]\n  \
                maximize_flags: [true, false, false]\n";
    let message = single_error(text, "search.maximize_flags", 5);
    assert_mentions(&message, &["3 entries", "objective_names has 2", "one true/false per objective"]);
}

#[test]
fn flags_without_names() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  maximize_flags: [true, false]\n";
    let message = single_error(text, "search.maximize_flags", 4);
    assert_mentions(&message, &["without objective_names"]);
}

#[test]
fn bad_maximize_flag() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  objective_names: [performance_metric, bops]\n  \
                maximize_flags: [true, maybe]\n";
    let message = single_error(text, "search.maximize_flags[1]", 5);
    assert_mentions(&message, &["'maybe'", "true, false"]);
}

#[test]
fn unknown_objective() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  objective_names:\n    - performance_metric\n    \
                - latency\n  maximize_flags: [true, false]\n";
    let message = single_error(text, "search.objective_names[1]", 6);
    assert_mentions(&message, &["'latency'", "not an objective", Objective::ACCEPTED]);
}

#[test]
fn duplicate_objective() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  objective_names: [bops, accuracy, bops]\n";
    let message = single_error(text, "search.objective_names[2]", 4);
    assert_mentions(&message, &["'bops'", "twice", "search.objective_names[0]"]);
}

#[test]
fn hardware_objective_needs_hardware_metrics() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  objective_names: [accuracy, avg_resource]\n";
    let message = single_error(text, "search.objective_names[1]", 4);
    assert_mentions(&message, &["'avg_resource'", "use_hardware_metrics: true"]);
}

#[test]
fn unknown_activation() {
    let message = single_error(&with("search_space:\n  act_space: [relu, swish]\n"), "search_space.act_space[1]", 4);
    assert_mentions(&message, &["'swish'", "relu, leaky_relu", "gelu"]);
}

#[test]
fn softmax_is_not_a_hidden_activation() {
    let message = single_error(&with("search_space:\n  act_space: [Softmax]\n"), "search_space.act_space[0]", 4);
    assert_mentions(&message, &["'Softmax'", "softmax only as output_activation"]);
}

#[test]
fn bad_output_activation() {
    let message =
        single_error(&with("search_space:\n  output_activation: argmax\n"), "search_space.output_activation", 4);
    assert_mentions(&message, &["'argmax'", "softmax"]);
}

#[test]
fn bad_norm() {
    let message = single_error(&with("search_space:\n  norm_space: [null, group]\n"), "search_space.norm_space[1]", 4);
    assert_mentions(&message, &["'group'", "not a norm", Norm::ACCEPTED]);
}

#[test]
fn bad_block_type() {
    let message = single_error(
        &with("search_space:\n  block_types:\n    - Conv\n    - Transformer\n"),
        "search_space.block_types[1]",
        6,
    );
    assert_mentions(&message, &["'Transformer'", "not a block type", "Conv, ConvAttn, MLP, None"]);
}

#[test]
fn non_positive_width() {
    let message =
        single_error(&with("search_space:\n  mlp_width_space: [8, 0, 16]\n"), "search_space.mlp_width_space[1]", 4);
    assert_mentions(&message, &["0 is out of range", "a whole number from 1 to 4096"]);
    let message = single_error(&with("search_space:\n  channel_space: [-4]\n"), "search_space.channel_space[0]", 4);
    assert_mentions(&message, &["-4", "a whole number from 1 to 4096"]);
}

#[test]
fn empty_list() {
    let message = single_error(&with("search_space:\n  kernel_space: []\n"), "search_space.kernel_space", 4);
    assert_mentions(&message, &["empty", "whole numbers ≥ 1"]);
}

#[test]
fn bad_precision_string() {
    let text = with("hls_config:\n  model:\n    precision: ap_fixed<8;3>\n");
    let message = single_error(&text, "hls_config.model.precision", 5);
    assert_mentions(&message, &["'ap_fixed<8;3>'", "ap_fixed<W,I> with 0 < I ≤ W"]);
    let message = single_error(
        &with("hls_config:\n  model:\n    precision: \"ap_fixed<4,6>\"\n"),
        "hls_config.model.precision",
        5,
    );
    assert_mentions(&message, &["'ap_fixed<4,6>'"]);
    assert_eq!(parse_precision(" ap_fixed<16, 6> "), Some((16, 6)));
    assert_eq!(parse_precision("ap_fixed<8,0>"), None);
}

#[test]
fn bad_board_and_strategy() {
    let errors = errors(&with("hls_config:\n  board: vu9p\n  model: {strategy: fast}\n"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!((errors[0].key_path.as_str(), errors[0].line), ("hls_config.board", Some(4)));
    assert_mentions(&errors[0].message, &["'vu9p'", "zcu102, pynq-z2, alveo-u200, alveo-u250"]);
    assert_eq!((errors[1].key_path.as_str(), errors[1].line), ("hls_config.model.strategy", Some(5)));
    assert_mentions(&errors[1].message, &["'fast'", "Latency, Resource"]);
    let hls = parse(&with("hls_config: {board: PYNQ_Z2, model: {strategy: resource}}\n")).unwrap().hls;
    assert_eq!((hls.board.as_str(), hls.strategy.as_str()), ("pynq-z2", "Resource"));
}

#[test]
fn estimator_and_rule4ml_row() {
    let hls = parse(MINIMAL).unwrap().hls;
    assert_eq!(hls.estimator, EstimatorKind::Analytical);
    assert_eq!(hls.rule4ml_row, Rule4mlRow::default());
    assert_eq!((hls.rule4ml_row.hls4ml_version.as_str(), hls.rule4ml_row.vivado_version.as_str()), ("0.8.1", "2019.1"));
    let text = with("hls_config:\n  estimator: Rule4ML\n  rule4ml: {hls4ml_version: 1.1.0, vivado_version: 2023.2}\n");
    let hls = parse(&text).unwrap().hls;
    assert_eq!(hls.estimator, EstimatorKind::Rule4ml);
    assert_eq!((hls.rule4ml_row.hls4ml_version.as_str(), hls.rule4ml_row.vivado_version.as_str()), ("1.1.0", "2023.2"));

    let message = single_error(&with("hls_config:\n  estimator: vivado\n"), "hls_config.estimator", 4);
    assert_mentions(&message, &["'vivado'", "analytical, rule4ml"]);
    let errors = errors(&with("hls_config:\n  rule4ml:\n    hls4ml_version: 0.9.0\n    vivado_version: 2018.3\n"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!((errors[0].key_path.as_str(), errors[0].line), ("hls_config.rule4ml.hls4ml_version", Some(5)));
    assert_mentions(&errors[0].message, &["'0.9.0'", "0.8.1, 1.1.0"]);
    assert_eq!((errors[1].key_path.as_str(), errors[1].line), ("hls_config.rule4ml.vivado_version", Some(6)));
    assert_mentions(&errors[1].message, &["2018.3 is not", "2019.1, 2019.2", "2024.2"]);
    let message = single_error(&with("hls_config:\n  rule4ml: 0.8.1\n"), "hls_config.rule4ml", 4);
    assert_mentions(&message, &["not a map"]);
}

#[test]
fn int_bits_not_below_total_bits() {
    let text = with(
        "local_search:\n  precision_pairs:\n    - {total_bits: 8, int_bits: 3}\n    - {total_bits: 4, int_bits: 4}\n",
    );
    let message = single_error(&text, "local_search.precision_pairs[1].int_bits", 6);
    assert_mentions(&message, &["4 is not below total_bits (4)", "0 ≤ int_bits < total_bits"]);
}

#[test]
fn zero_bits() {
    let text = with("local_search:\n  precision_pairs:\n    - total_bits: 0\n      int_bits: 0\n");
    let message = single_error(&text, "local_search.precision_pairs[0].total_bits", 5);
    assert_mentions(&message, &["0 is out of range", "from 1 to 32"]);
}

#[test]
fn negative_and_too_wide_bits() {
    let text = with("local_search:\n  precision_pairs:\n    - {total_bits: 64, int_bits: -1}\n");
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].key_path, "local_search.precision_pairs[0].total_bits");
    assert_mentions(&errors[0].message, &["64", "from 1 to 32"]);
    assert_eq!(errors[1].key_path, "local_search.precision_pairs[0].int_bits");
    assert_mentions(&errors[1].message, &["-1", "from 0 to 32"]);
    assert!(errors.iter().all(|e| e.line == Some(5)));
}

#[test]
fn missing_bits_and_duplicate_pair() {
    let text = with(
        "local_search:\n  precision_pairs:\n    - {total_bits: 8}\n    - {total_bits: 6, int_bits: 2}\n    - {total_bits: 6, int_bits: 2}\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!((errors[0].key_path.as_str(), errors[0].line), ("local_search.precision_pairs[0].int_bits", Some(5)));
    assert_mentions(&errors[0].message, &["required"]);
    assert_eq!((errors[1].key_path.as_str(), errors[1].line), ("local_search.precision_pairs[2]", Some(7)));
    assert_mentions(&errors[1].message, &["twice", "local_search.precision_pairs[1]"]);
}

#[test]
fn bad_pruning_rate() {
    let message = single_error(&with("local_search:\n  pruning_rate: 1.5\n"), "local_search.pruning_rate", 4);
    assert_mentions(&message, &["1.5", "between 0 and 1"]);
}

#[test]
fn synthesis_precision_must_come_from_local_search() {
    let text = with(
        "local_search:\n  precision_pairs: [{total_bits: 8, int_bits: 3}]\nsynthesis:\n  total_bits: 6\n  int_bits: 2\n",
    );
    let message = single_error(&text, "synthesis.total_bits", 6);
    assert_mentions(&message, &["6/2", "accepted: 8/3"]);
    let synthesis = parse(&with("synthesis: {total_bits: 6, int_bits: 2}\n")).unwrap().synthesis.unwrap();
    assert_eq!(synthesis.hls_output_dir, Path::new("./results/exp/hls_project"));
}

#[test]
fn min_layers_above_max_layers() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  min_layers: 4\n  max_layers: 3\n";
    let message = single_error(text, "search.max_layers", 5);
    assert_mentions(&message, &["3 is less than search.min_layers (4)", "≥ 4"]);
}

#[test]
fn file_dataset_needs_train_file() {
    let message = single_error("dataset:\n  name: file\nsearch: {model_type: mlp}\n", "dataset.train_file", 1);
    assert_mentions(&message, &["required", ".npz"]);
}

#[test]
fn wrong_types() {
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "search:\n  model_type: mlp\n  n_trials: ten\n",
            "search.n_trials",
            5,
            &["'ten' (a string)", "a whole number ≥ 1"],
        ),
        (
            "search:\n  model_type: mlp\n  epochs: 2.5\n",
            "search.epochs",
            5,
            &["2.5 (a decimal number)", "a whole number"],
        ),
        ("search:\n  model_type: mlp\n  n_trials: \"3\"\n", "search.n_trials", 5, &["'3' (a string)"]),
        (
            "search:\n  model_type: mlp\n  use_hardware_metrics: 1\n",
            "search.use_hardware_metrics",
            5,
            &["1 (a whole number)", "true, false"],
        ),
        ("search:\n  model_type: mlp\n  learning_rate: fast\n", "search.learning_rate", 5, &["'fast'", "a number > 0"]),
        (
            "search_space:\n  mlp_width_space: 8\n",
            "search_space.mlp_width_space",
            4,
            &["8 (a whole number)", "a list of whole numbers"],
        ),
        ("search_space:\n  conv_attn: [4]\n", "search_space.conv_attn", 4, &["a list is not a map"]),
        ("hls_config:\n  model: ap_fixed<8,3>\n", "hls_config.model", 4, &["'ap_fixed<8,3>' (a string) is not a map"]),
        ("output:\n  results_dir: [a, b]\n", "output.results_dir", 4, &["a list is not a directory"]),
        (
            "local_search:\n  precision_pairs: [[8, 3]]\n",
            "local_search.precision_pairs[0]",
            4,
            &["a list is not a map"],
        ),
        ("search_space: [1, 2]\n", "search_space", 3, &["a list is not a map"]),
    ];
    for (extra, key_path, line, parts) in cases {
        // Sections given twice would be a YAML error; replace the minimal ones.
        let text = if extra.starts_with("search:") {
            format!("dataset: {{name: digits}}\nplaceholder: 0\n{extra}")
        } else {
            with(extra)
        };
        let message = single_error(&text, key_path, *line);
        assert_mentions(&message, parts);
    }
}

#[test]
fn yaml_syntax_error_has_its_line() {
    let message = single_error("dataset:\n  name: digits\nsearch: [mlp\n  n_trials: 3\n", "", 4);
    assert_mentions(&message, &["YAML syntax error"]);
    let message = single_error("dataset:\n  name: digits\n  name: mnist\n", "", 3);
    assert_mentions(&message, &["duplicated key"]);
    let errors = errors("dataset:\n\tname: digits\n");
    assert_eq!(errors[0].line, Some(2));
}

#[test]
fn root_must_be_a_map() {
    let message = single_error("- dataset\n- search\n", "", 1);
    assert_mentions(&message, &["a list is not an experiment", "dataset, search"]);
}

#[test]
fn every_error_is_reported() {
    let text = "\
dataset:
  name: cifar
  validation_split: 2
search:
  model_type: mlp
  n_trials: 0
  sampler: nsga3
  objective_names: [performance_metric, speed]
  maximize_flags: [true]
search_space:
  act_space: [relu, swish]
  norm_space: [group]
  block_types: [Dense]
  mlp_width_space: [0]
hls_config:
  board: zcu102
  model: {precision: fixed8, reuse_factor: 0}
local_search:
  precision_pairs:
    - {total_bits: 0, int_bits: 0}
    - {total_bits: 8, int_bits: 8}
";
    let errors = parse(text).unwrap_err();
    let found: Vec<(&str, Option<usize>)> = errors.errors.iter().map(|e| (e.key_path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        vec![
            ("dataset.name", Some(2)),
            ("dataset.validation_split", Some(3)),
            ("search.n_trials", Some(6)),
            ("search.sampler", Some(7)),
            ("search.objective_names[1]", Some(8)),
            ("search.maximize_flags", Some(9)),
            ("search_space.act_space[1]", Some(11)),
            ("search_space.norm_space[0]", Some(12)),
            ("search_space.block_types[0]", Some(13)),
            ("search_space.mlp_width_space[0]", Some(14)),
            ("hls_config.model.precision", Some(17)),
            ("hls_config.model.reuse_factor", Some(17)),
            ("local_search.precision_pairs[0].total_bits", Some(20)),
            ("local_search.precision_pairs[1].int_bits", Some(21)),
        ]
    );
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), errors.errors.len());
    assert!(shown.lines().all(|line| line.starts_with("/configs/exp.yaml:")), "{shown}");
    assert!(shown.contains(
        "/configs/exp.yaml:7: search.sampler: 'nsga3' is not a sampler (did you mean 'nsga2'?); accepted: auto, tpe, nsga2, random"
    ));
}

#[test]
fn display_without_line() {
    let errors = parse("search: {model_type: mlp}\n").unwrap_err();
    assert_eq!(
        errors.to_string(),
        format!("/configs/exp.yaml: dataset.name: is required; accepted: {}", DatasetName::ACCEPTED)
    );
}

#[test]
fn unreadable_file() {
    let errors = load(Path::new("/nonexistent/dir/x.yaml")).unwrap_err();
    assert_eq!(errors.errors.len(), 1);
    assert!(errors.errors[0].message.starts_with("cannot read"));
}

#[test]
fn pyyaml_booleans_are_accepted() {
    let experiment = parse("dataset: {name: digits, flatten: no, one_hot: Yes}\nsearch: {model_type: mlp}\n").unwrap();
    assert!(!experiment.dataset.flatten && experiment.dataset.one_hot);
}

#[test]
fn tutorial_3_qubit_example_of_ours() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tutorial_3_qubit/config.yaml");
    let t3 = load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    let dataset = &t3.dataset;
    assert_eq!(dataset.name, DatasetName::Qubit);
    assert_eq!((dataset.start_location, dataset.window_size, dataset.subset_size), (Some(100), Some(400), Some(10000)));
    assert!(dataset.normalize && dataset.num_classes == Some(2));
    // data_dir is relative to the file: the repository's data/qubit.
    assert_eq!(dataset.data_dir.as_deref(), Some(path.parent().unwrap().join("../../data/qubit").as_path()));
    assert!(t3.search.use_hardware_metrics && t3.local_search.is_some() && t3.synthesis.is_some());
    assert!(t3.unused_keys.is_empty(), "{:?}", t3.unused_keys);
}

#[test]
fn qubit_window_of_zero_samples() {
    let text = "dataset:\n  name: qubit\n  start_location: 100\n  window_size: 0\nsearch: {model_type: mlp}\n";
    let message = single_error(text, "dataset.window_size", 4);
    assert_mentions(&message, &["0", "1"]);
    let text = "dataset:\n  name: qubit\n  start_location: -5\nsearch: {model_type: mlp}\n";
    let message = single_error(text, "dataset.start_location", 3);
    assert_mentions(&message, &["-5"]);
}

// ------------------------------------------------------------------ DeepSets

const DEEPSETS: &str = "dataset: {name: mnist_points}\nsearch: {model_type: deepsets}\n";

#[test]
fn deepsets_defaults_and_point_datasets() {
    let experiment = parse(DEEPSETS).unwrap();
    assert_eq!(experiment.search.model_type, ModelType::DeepSets);
    let dataset = &experiment.dataset;
    assert_eq!((dataset.name, dataset.points), (DatasetName::Mnist, Some(32)));
    assert!(dataset.sets && !dataset.flatten);
    let space = &experiment.search_space;
    assert_eq!(space.phi_width_space, space.mlp_width_space);
    assert_eq!(space.rho_width_space, space.mlp_width_space);
    assert_eq!((space.phi_layers, space.rho_layers), (LayerRange { min: 1, max: 3 }, LayerRange { min: 1, max: 2 }));
    assert_eq!(space.aggregation_space, vec![Aggregation::Mean, Aggregation::Max]);
    assert!(experiment.unused_keys.is_empty(), "{:?}", experiment.unused_keys);
    // Spellings, and points on a plain image name; an MLP flattens the sets.
    for (text, name, points) in [
        ("dataset: {name: Digits-Points, points: 20}\nsearch: {model_type: deep_sets}\n", DatasetName::Digits, 20),
        ("dataset: {name: fashion_mnist, points: 8}\nsearch: {model_type: DeepSets}\n", DatasetName::FashionMnist, 8),
        ("dataset: {name: digits_points}\nsearch: {model_type: mlp}\n", DatasetName::Digits, 32),
    ] {
        let experiment = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((experiment.dataset.name, experiment.dataset.points), (name, Some(points)), "{text}");
        let deepsets = experiment.search.model_type == ModelType::DeepSets;
        assert_eq!((experiment.dataset.sets, experiment.dataset.flatten), (deepsets, !deepsets), "{text}");
    }
    // Set files need no points.
    let text = "dataset: {name: file, train_file: x.npy, train_labels: y.npy}\nsearch: {model_type: deepsets}\n";
    let experiment = parse(text).unwrap();
    assert!(experiment.dataset.sets && experiment.dataset.points.is_none());
}

#[test]
fn deepsets_search_space_keys() {
    let text = format!(
        "{DEEPSETS}search_space:\n  mlp_width_space: [4, 8]\n  phi_width_space: [16, 32]\n  phi_layers: 2\n  \
         rho_layers: [0, 3]\n  aggregation_space: [Max]\n  act_space: [relu]\n"
    );
    let space = parse(&text).unwrap().search_space;
    assert_eq!((space.phi_width_space, space.rho_width_space), (vec![16, 32], vec![4, 8]));
    assert_eq!((space.phi_layers, space.rho_layers), (LayerRange { min: 2, max: 2 }, LayerRange { min: 0, max: 3 }));
    assert_eq!(space.aggregation_space, vec![Aggregation::Max]);
}

#[test]
fn bad_deepsets_search_space() {
    let space = |body: &str| format!("{DEEPSETS}search_space:\n{body}");
    let message = single_error(&space("  aggregation_space: [mean, sum]\n"), "search_space.aggregation_space[1]", 4);
    assert_mentions(&message, &["'sum'", "not an aggregation", "mean, max"]);
    let message = single_error(&space("  phi_layers: [3, 1]\n"), "search_space.phi_layers", 4);
    assert_mentions(&message, &["[3, 1]", "low above high", "[low, high] with 1 ≤ low ≤ high"]);
    let message = single_error(&space("  phi_layers: 0\n"), "search_space.phi_layers", 4);
    assert_mentions(&message, &["0 is too small", "≥ 1"]);
    let message = single_error(&space("  rho_layers: [0, 1, 2]\n"), "search_space.rho_layers", 4);
    assert_mentions(&message, &["3 items is not a range", "a whole number ≥ 0, or [low, high]"]);
    let message = single_error(&space("  rho_layers: [0, two]\n"), "search_space.rho_layers[1]", 4);
    assert_mentions(&message, &["'two'", "whole number"]);
    let message = single_error(&space("  rho_layers: many\n"), "search_space.rho_layers", 4);
    assert_mentions(&message, &["'many'", "not a layer count", "[low, high]"]);
    let message = single_error(&space("  phi_width_space: []\n"), "search_space.phi_width_space", 4);
    assert_mentions(&message, &["empty", "whole numbers from 1 to 4096"]);
}

#[test]
fn deepsets_needs_set_data() {
    let message = single_error("dataset:\n  name: mnist\nsearch: {model_type: deepsets}\n", "dataset.name", 2);
    assert_mentions(&message, &["'mnist' holds images", "deepsets needs sets", "mnist_points", "points: N"]);
    let message = single_error("dataset:\n  name: qubit\nsearch: {model_type: deepsets}\n", "dataset.name", 2);
    assert_mentions(&message, &["'qubit' holds vectors", "(N, elements, features)"]);
    let message = single_error(
        "dataset:\n  name: digits_points\n  flatten: true\nsearch: {model_type: deepsets}\n",
        "dataset.flatten",
        3,
    );
    assert_mentions(&message, &["flatten every set", "accepted: false"]);
    let message =
        single_error("dataset:\n  name: qubit\n  points: 8\nsearch: {model_type: mlp}\n", "dataset.points", 3);
    assert_mentions(&message, &["qubit samples are not images", "mnist, fashion_mnist, digits or file"]);
    let message = single_error("dataset:\n  name: qubit_points\nsearch: {model_type: mlp}\n", "dataset.name", 2);
    assert_mentions(&message, &["'qubit_points' is not a dataset", "digits_points"]);
    let message = single_error("dataset: {name: digits}\nsearch:\n  model_type: deepset5\n", "search.model_type", 3);
    assert_mentions(&message, &["'deepset5'", "mlp, block, deepsets"]);
}

#[test]
fn deepsets_example_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deepsets_points.yaml");
    let experiment = load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(experiment.search.model_type, ModelType::DeepSets);
    assert!(experiment.dataset.sets && experiment.dataset.points.is_some());
    assert!(experiment.unused_keys.is_empty(), "{:?}", experiment.unused_keys);
}

#[test]
fn clock_period_io_type_and_backend() {
    let hls = parse(MINIMAL).unwrap().hls;
    assert_eq!((hls.clock_period, hls.io_type, hls.backend), (5.0, IoType::Parallel, Backend::Vitis));
    let hls = parse(&with("hls_config: {clock_period: 3.3, io_type: io_stream, backend: Vivado}\n")).unwrap().hls;
    assert_eq!((hls.clock_period, hls.io_type, hls.backend), (3.3, IoType::Stream, Backend::Vivado));
    let errors = errors(&with("hls_config:\n  clock_period: 0\n  io_type: serial\n  backend: quartus\n"));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!((errors[0].key_path.as_str(), errors[0].line), ("hls_config.clock_period", Some(4)));
    assert_mentions(&errors[0].message, &["0.5 to 1000"]);
    assert_mentions(&errors[1].message, &["'serial'", "io_parallel, io_stream"]);
    assert_mentions(&errors[2].message, &["'quartus'", "Vivado, Vitis"]);
}

// -------------------------------------------------- sizes that would abort

#[test]
fn sizes_that_become_allocations_are_bounded() {
    // Each of these once passed validation and then aborted the process
    // for memory; now each is an error naming its key, line and bound.
    let (data, search) = ("dataset:\n  name: digits\n", "search:\n  model_type: mlp\n");
    let cases: [(String, &str, usize, &str); 7] = [
        (
            format!("{MINIMAL}search_space:\n  mlp_width_space: [64, 100000]\n"),
            "search_space.mlp_width_space[1]",
            4,
            "1 to 4096",
        ),
        (format!("{data}{search}  max_layers: 1000000\n"), "search.max_layers", 5, "1 to 64"),
        (format!("{data}{search}  batch_size: 100000000\n"), "search.batch_size", 5, "1 to 65536"),
        (format!("{data}  resize_val: 100000\n{search}"), "dataset.resize_val", 3, "1 to 128"),
        (format!("{data}  points: 1000000000\n{search}"), "dataset.points", 3, "1 to 4096"),
        (
            format!("{MINIMAL}local_search:\n  pruning_iterations: 1000000000\n"),
            "local_search.pruning_iterations",
            4,
            "0 to 100",
        ),
        (
            format!("{MINIMAL}search_space:\n  phi_width_space: [5000]\n"),
            "search_space.phi_width_space[0]",
            4,
            "1 to 4096",
        ),
    ];
    for (text, path, line, accepted) in cases {
        let errors = errors(&text);
        let error = errors.iter().find(|e| e.key_path == path).unwrap_or_else(|| panic!("{path}: {errors:#?}"));
        assert_eq!(error.line, Some(line), "{error:?}");
        assert_mentions(&error.message, &["out of range", accepted]);
    }
}

#[test]
fn conv_blocks_on_flattened_input_are_an_error() {
    let space = "search_space:\n  block_types: [Conv, MLP]\n";
    // Explicit flatten: true points at it.
    let text = format!("dataset:\n  name: mnist\n  flatten: true\nsearch:\n  model_type: block\n{space}");
    let message = single_error(&text, "dataset.flatten", 3);
    assert_mentions(&message, &["true,", "Conv", "left out", "flatten: false"]);
    // Flatten left at its default (true) points at the block types.
    let text = format!("dataset:\n  name: mnist\nsearch:\n  model_type: block\n{space}");
    let message = single_error(&text, "dataset.flatten", 6);
    assert_mentions(&message, &["true by default", "Conv"]);
    // flatten: false, or no conv block, is fine.
    assert!(
        parse(&format!("dataset:\n  name: mnist\n  flatten: false\nsearch:\n  model_type: block\n{space}")).is_ok()
    );
    assert!(
        parse("dataset:\n  name: mnist\nsearch:\n  model_type: block\nsearch_space:\n  block_types: [MLP]\n").is_ok()
    );
}

#[test]
fn qubit_keys_on_another_dataset_get_a_note() {
    let text = "dataset:\n  name: digits\n  num_classes: 2\n  start_location: 100\nsearch: {model_type: mlp}\n";
    let experiment = parse(text).unwrap();
    assert_eq!(
        experiment.unused_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "dataset.num_classes (read only with dataset name qubit)",
            "dataset.start_location (read only with dataset name qubit)"
        ]
    );
}

#[test]
fn search_timeout_keys() {
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  timeout: 1h30m\n  timeout_hard: 5700\n";
    let search = parse(text).unwrap().search;
    assert_eq!(search.timeout, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(search.timeout_hard, Some(std::time::Duration::from_secs(5700)));
    assert_eq!(parse(MINIMAL).unwrap().search.timeout, None);

    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  timeout: 10 minutes\n";
    let message = single_error(text, "search.timeout", 4);
    assert_mentions(&message, &["'10 minutes'", "accepted: a positive duration", "1h30m", "plain seconds"]);
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  timeout: [1h]\n";
    assert_mentions(&single_error(text, "search.timeout", 4), &["not a duration", "45m"]);
    let text = "dataset: {name: digits}\nsearch:\n  model_type: mlp\n  timeout: 2h\n  timeout_hard: 1h\n";
    assert_mentions(&single_error(text, "search.timeout_hard", 5), &["1h is shorter than search.timeout (2h)"]);
}

#[test]
fn dataset_name_lists_match_the_accepted_text() {
    let names: Vec<&str> = DatasetName::ALL.iter().map(DatasetName::name).collect();
    assert!(DatasetName::ACCEPTED.starts_with(&format!("{}, ", names.join(", "))), "{}", DatasetName::ACCEPTED);
    for name in DatasetName::ALL {
        assert_eq!(DatasetName::parse(name.name()), Some(name));
    }
    assert!(DatasetName::DOWNLOADABLE.iter().all(|d| DatasetName::ALL.contains(d)));
}

/// A tutorial-2-like block search (Conv, ConvAttn, MLP; relu, gelu, leaky_relu).
const T2_LIKE: &str = "dataset:\n  name: fashion_mnist\n  flatten: false\nsearch:\n  model_type: block\n\
                       search_space:\n  block_types: [Conv, ConvAttn, MLP, None]\n  act_space: [relu, gelu, leaky_relu]\n  \
                       norm_space: [null, batch, layer]\n  num_blocks: 4\n";

#[test]
fn exportable_only_drops_what_the_export_refuses() {
    let all = parse(T2_LIKE).unwrap().search_space;
    assert!(!all.exportable_only && all.dropped_for_export.is_empty());
    assert_eq!(all.block_types, vec!["Conv", "ConvAttn", "MLP", "None"]);
    let space = parse(&format!("{T2_LIKE}  exportable_only: true\n")).unwrap().search_space;
    assert!(space.exportable_only);
    // ConvAttn is exported (hls4ml's Einsum and a configured softmax).
    assert_eq!(space.block_types, vec!["Conv", "ConvAttn", "MLP", "None"]);
    // GELU is exported (x·σ(1.702x) with hls4ml's sigmoid table); LayerNorm is not.
    assert_eq!(space.act_space, vec![Activation::Relu, Activation::Gelu, Activation::LeakyRelu]);
    assert_eq!(space.norm_space, vec![Norm::None, Norm::Batch]);
    let dropped: Vec<&str> = space.dropped_for_export.iter().map(|d| d.split(' ').next().unwrap()).collect();
    assert_eq!(dropped, ["layer"]);
    assert!(space.dropped_for_export[0].contains("LayerNorm"), "{:?}", space.dropped_for_export);
    // Nothing dropped when nothing is refused.
    let text = with("search_space:\n  exportable_only: true\n");
    assert!(parse(&text).unwrap().search_space.dropped_for_export.is_empty());
    // A misspelling gets the key suggested.
    let experiment = parse(&with("search_space:\n  exportable_onyl: true\n")).unwrap();
    assert_eq!(experiment.unused_keys[0].suggestion.as_deref(), Some("exportable_only"));
}

#[test]
fn exportable_only_with_nothing_left_is_an_error() {
    let text = with("search_space:\n  norm_space: [layer]\n  exportable_only: true\n");
    let message = single_error(&text, "search_space.exportable_only", 5);
    assert_mentions(&message, &["true leaves search_space.norm_space empty", "layer (", "exportable_only: false"]);
    // GELU and DeepSets are exported: nothing to drop.
    assert!(parse(&with("search_space:\n  act_space: [gelu]\n  exportable_only: true\n")).is_ok());
    assert!(parse(&format!("{DEEPSETS}search_space: {{exportable_only: true}}\n")).is_ok());
}

#[test]
fn per_layer_precision_keys() {
    let local = parse(&with("local_search: {qat_epochs: 1}\n")).unwrap().local_search.unwrap();
    assert_eq!(local.precision, crate::config::PrecisionMode::Uniform);
    assert_eq!(local.precision_objective, crate::config::PrecisionObjective::AvgResource);
    assert_eq!((local.accuracy_tolerance, local.min_bits, local.reference_bits), (0.005, 2, None));
    let text = with(
        "local_search:\n  precision: per-layer\n  reference_bits: 8\n  accuracy_tolerance: 0.01\n  precision_objective: lut\n  min_bits: 3\n",
    );
    let local = parse(&text).unwrap().local_search.unwrap();
    assert_eq!(local.precision, crate::config::PrecisionMode::PerLayer);
    assert_eq!(local.precision_objective, crate::config::PrecisionObjective::Lut);
    assert_eq!((local.accuracy_tolerance, local.min_bits, local.reference_bits), (0.01, 3, Some(8)));
}

#[test]
fn bad_per_layer_precision_keys() {
    let message = single_error(&with("local_search:\n  precision: mixed\n"), "local_search.precision", 4);
    assert_mentions(&message, &["mixed", "uniform, per_layer"]);
    let text = with("local_search:\n  precision_pairs: [{total_bits: 8, int_bits: 3}]\n  reference_bits: 6\n");
    let message = single_error(&text, "local_search.reference_bits", 5);
    assert_mentions(&message, &["6", "accepted: one of 8"]);
    let message = single_error(&with("local_search:\n  accuracy_tolerance: 2\n"), "local_search.accuracy_tolerance", 4);
    assert_mentions(&message, &["2", "fraction from 0 to 1"]);
}
