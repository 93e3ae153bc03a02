//! Command definitions. Store and file commands live in `store_cmds`, radio
//! commands in `radio_cmds`, the quick-start demo in `demo`.

pub mod capture_cmds;
pub mod demo;
pub mod radio_cmds;
mod sim_relay;
pub mod store_cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "radiosync",
    version,
    about = "Keep SQLite databases in step between field stations over radio or files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Store(store_cmds::StoreCommand),
    #[command(flatten)]
    Radio(radio_cmds::RadioCommand),
    /// Read a frame capture file.
    #[command(subcommand)]
    Capture(capture_cmds::CaptureCommand),
    /// Feed a capture's received frames through decode and apply, to reproduce a field problem.
    Replay(capture_cmds::ReplayArgs),
    /// Two stations from the embedded sample data, edited on both sides, synced end to end.
    Demo(demo::DemoArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Store(cmd) => store_cmds::run(cmd),
        Command::Radio(cmd) => radio_cmds::run(cmd),
        Command::Capture(cmd) => capture_cmds::run_capture(cmd),
        Command::Replay(args) => capture_cmds::run_replay(args),
        Command::Demo(args) => demo::run(args),
    }
}
