//! The `softmax-wgpu` command line: parse, run, and turn any error into one line and an exit code
//! (2 for bad input or parameters, 1 for anything else).

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A library error knows whose fault it is; anything else (an I/O error printing output) is ours.
            let code = e
                .downcast_ref::<softmax_wgpu::Error>()
                .map_or(1, softmax_wgpu::Error::exit_code);
            ExitCode::from(code)
        }
    }
}
