//! `snac data`: dataset downloads and the qubit-readout simulator.

use crate::cli::{DataCommand, SimulateQubitArgs};
use anyhow::Result;
use snac_core::data::QubitSimParams;
use std::process::ExitCode;

pub fn data(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Fetch { name, dir, mirror } => {
            let path = snac_core::data::fetch(&name, dir.as_deref(), mirror.as_deref(), true)?;
            println!("{name} is in {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::SimulateQubit(args) => simulate_qubit(args),
    }
}

fn simulate_qubit(args: SimulateQubitArgs) -> Result<ExitCode> {
    let params = QubitSimParams {
        samples: args.samples,
        sample_ns: args.sample_ns,
        noise_std: args.noise_std,
        t1_us: args.t1_us,
        ring_up_ns: args.ring_up_ns,
        delay_ns: args.delay_ns,
        chi_mhz: args.chi_mhz,
        ground_prep_error: args.ground_prep_error,
        excited_prep_error: args.excited_prep_error,
        ..QubitSimParams::default()
    };
    let n_test = args.n_test.unwrap_or((args.n / 4).max(2));
    let paths = snac_core::data::write_qubit_dataset(&args.out, &params, args.n, n_test, args.seed)?;
    println!(
        "{} train and {n_test} test shots of {} I/Q samples (seed {}) in {}:",
        args.n,
        params.samples,
        args.seed,
        args.out.display()
    );
    for path in paths {
        println!("  {}", path.display());
    }
    println!("use them with dataset.name: qubit, dataset.data_dir: {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
