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
mod bench_job;
mod common;
mod devices;
mod eval;
mod gen;
mod group;
mod load;
mod parts;
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
    #[cfg(unix)]
    stop_on_signals();
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
        Command::Train(a) => {
            let mut group = group::Group::start()?;
            let result = train::run(*a, &mut group);
            group.finish(result)
        }
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

/// Set where another process speaks for this one (a process of `mpirun` other than the first, or any of them once
/// a failure has been reported): a signal then still ends it, without a line of its own.
pub(crate) static QUIET_SIGNALS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// SIGINT and SIGTERM end the command with one line and exit code 130 or 143, after removing the temporary files of
/// the outputs being written: an output is either the old file or the whole new one, never half of one, and no
/// hidden temporary is left beside it.
#[cfg(unix)]
fn stop_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let removed = softmax_wgpu::atomic::remove_temporaries();
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if !QUIET_SIGNALS.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!(
                    "error: stopped by {name}; {removed} unfinished output{} removed, finished ones kept",
                    if removed == 1 { "" } else { "s" }
                );
            }
            std::process::exit(128 + signal);
        }
    });
}
