//! `snac`: hardware-aware neural architecture search for FPGAs. The command
//! line lives in the library (`snac::main_with_args`), which the Python
//! package's `snac` script calls too.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    snac::main_with_args(std::env::args_os())
}
