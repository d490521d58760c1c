//! `snac data`: dataset downloads, the qubit-readout simulator, and images
//! turned into point sets for DeepSets.

use crate::cli::{DataCommand, MnistPointsArgs, SimulateQubitArgs};
use anyhow::{Context, Result, ensure};
use snac_core::config::DatasetConfig;
use snac_core::data::QubitSimParams;
use std::process::ExitCode;

pub fn data(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Fetch { name, dir, mirror } => {
            let path = snac_core::data::fetch(name.name(), dir.as_deref(), mirror.as_deref(), true)?;
            println!("{} is in {}", name.name(), path.display());
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::SimulateQubit(args) => simulate_qubit(args),
        DataCommand::MnistPoints(args) => mnist_points(args),
    }
}

fn mnist_points(args: MnistPointsArgs) -> Result<ExitCode> {
    let source = args.source;
    ensure!(args.points > 0, "--points 0 leaves empty sets; use at least 1");
    let config = DatasetConfig {
        points: Some(args.points),
        sets: true,
        flatten: false,
        data_dir: args.data_dir.clone(),
        subset_size: args.subset,
        ..DatasetConfig::new(source)
    };
    let data = snac_core::data::load(&config).with_context(|| format!("loading {}", source.name()))?;
    data.write_npy(&args.out)?;
    // Absolute paths: a config elsewhere resolves relative ones against its own folder.
    let out = std::fs::canonicalize(&args.out).unwrap_or_else(|_| args.out.clone());
    let paths = snac_core::data::NPY_SPLIT_FILES.map(|name| out.join(name));
    println!(
        "{} train and {} test sets of {} (x, y, intensity) points from {} in {}:",
        data.train.len(),
        data.val.len(),
        args.points,
        source.name(),
        out.display()
    );
    for path in &paths {
        println!("  {}", path.display());
    }
    let [x_train, y_train, x_test, y_test] = paths.each_ref().map(|path| path.display());
    println!(
        "use them with:\ndataset:\n  name: file\n  train_file: {x_train}\n  train_labels: {y_train}\n  \
         val_file: {x_test}\n  val_labels: {y_test}\nsearch:\n  model_type: deepsets"
    );
    Ok(ExitCode::SUCCESS)
}

fn simulate_qubit(args: SimulateQubitArgs) -> Result<ExitCode> {
    let mut params = match &args.params {
        Some(file) => QubitSimParams::from_yaml_file(file)?,
        None => QubitSimParams::default(),
    };
    let overrides = [
        (&mut params.sample_ns, args.sample_ns),
        (&mut params.noise_std, args.noise_std),
        (&mut params.t1_us, args.t1_us),
        (&mut params.ring_up_ns, args.ring_up_ns),
        (&mut params.delay_ns, args.delay_ns),
        (&mut params.chi_mhz, args.chi_mhz),
        (&mut params.ground_prep_error, args.ground_prep_error),
        (&mut params.excited_prep_error, args.excited_prep_error),
    ];
    for (field, value) in overrides {
        if let Some(value) = value {
            *field = value;
        }
    }
    if let Some(samples) = args.samples {
        params.samples = samples;
    }
    let n_test = args.n_test.unwrap_or((args.n / 4).max(2));
    let paths = snac_core::data::write_qubit_dataset(&args.out, &params, args.n, n_test, args.seed)?;
    println!(
        "{} train and {n_test} test shots of {} I/Q samples (seed {}) in {}:",
        args.n,
        params.samples,
        args.seed,
        args.out.display()
    );
    for path in &paths {
        println!("  {}", path.display());
    }
    println!("  {} (the parameters)", args.out.join(snac_core::data::QUBIT_SIM_PARAMS_FILE).display());
    // Sample traces per class: the class means and a few shots, I and Q.
    let (dims, x) = snac_core::data::read_npy_f32(&paths[0])?;
    let (_, y) = snac_core::data::read_npy_f32(&paths[1])?;
    let shots = dims[0].min(2000);
    let labels: Vec<u32> = y[..shots].iter().map(|&v| v as u32).collect();
    let traces = snac_report::traces::Traces::new(&x[..shots * dims[1]], &labels, dims[1], params.sample_ns)?;
    let drawn = snac_report::plots::save(&traces, &args.out)?;
    for file in &drawn.files {
        println!("  {} (sample traces per class)", file.display());
    }
    println!("use them with dataset.name: qubit, dataset.data_dir: {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
