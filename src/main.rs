//! The `radiosync` command line: parses, calls the library, prints.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("radiosync: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Rust ignores SIGPIPE, so `radiosync log | head` would panic on the closed
/// pipe; a command-line tool should just stop quietly, as `cat` does.
fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: runs first thing in main, before any thread exists.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}
