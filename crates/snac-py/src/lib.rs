//! `snac_pack._native`: the Rust half of the `snac_pack` Python package
//! (`python/snac_pack/`). It calls the same stage functions the `snac`
//! binary does (the `snac` library), not a subprocess; the Python half turns
//! what it returns into NumPy arrays, pandas DataFrames and result objects.
//!
//! Data crosses as JSON text and raw little-endian bytes (the Python half
//! converts with NumPy), which keeps this layer thin and free of a NumPy
//! binding crate. Every error arrives as `snac_pack.SnacError` with the
//! message the command line prints.

mod model;
mod results;
mod run;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(
    snac_pack,
    SnacError,
    PyException,
    "An error from snac: the message names the file, key path or line, the value, and what is accepted."
);

/// An anyhow error as a `SnacError` with the command line's message.
pub(crate) fn py_err(err: anyhow::Error) -> PyErr {
    SnacError::new_err(format!("{err:#}"))
}

/// The `snac` command line, in this process: `argv` starts with the program
/// name. Returns the exit status.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| snac::exit_status(snac::main_with_args(argv)))
}

/// The embedded example config (`snac example-config`).
#[pyfunction]
fn example_config() -> &'static str {
    snac::cmd::EXAMPLE_CONFIG
}

/// The Rust half of `snac_pack`; use `snac_pack`, not this module.
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::SnacError;
    #[pymodule_export]
    use super::model::Model;
    #[pymodule_export]
    use super::results::{estimate, load_trials, study_names};
    #[pymodule_export]
    use super::run::run_experiment;
    #[pymodule_export]
    use super::{cli, example_config};

    #[pymodule_init]
    fn init() {
        snac::ui::init_logging(None);
    }
}
