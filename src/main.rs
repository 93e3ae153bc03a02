//! The `radiosync` command line: parses, calls the library, prints.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("radiosync: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
