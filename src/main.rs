//! The `softmax-wgpu` command line: parse, run, and turn any error into one line and an exit code
//! (2 for bad input or parameters, 1 for anything else).

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let input = e
                .downcast_ref::<softmax_wgpu::Error>()
                .is_some_and(softmax_wgpu::Error::is_input);
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}
