//! The command line: arguments ([`args`]) → checked data ([`load`]) → one module per command. Helpers the commands
//! share (opening a device, checking an output path, progress bars, writing output) live in [`common`].

/// `println!` that ends printing quietly when stdout is closed (`… | head -1`) instead of panicking: the command
/// goes on, and still writes its files.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::common::print_out(&format!("{}\n", format!($($arg)*)))
    };
}

/// `print!` with [`outln!`]'s care for a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::common::print_out(&format!($($arg)*))
    };
}

mod args;
mod bench;
mod common;
mod devices;
mod eval;
mod gen;
mod load;
mod predict;
mod train;
mod validate;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use args::{Cli, Command};

/// Parses the arguments and runs the command. A usage error is one line on stderr and exit code 2; `--help` and
/// `--version` print as usual.
pub fn run() -> Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("{}", one_line(&e.render().to_string()));
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            e.print()?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Predict(a) => predict::run(a),
        Command::Devices(a) => devices::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Gen(a) => gen::run(a),
        Command::Eval(a) => eval::run(a),
    }
}

/// clap's message up to its first blank line ("Usage: …" follows), on one line.
fn one_line(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    text.join(" ")
}
