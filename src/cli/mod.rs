//! Command definitions. Store and file commands live in `store_cmds`, radio
//! commands in `radio_cmds`, the quick-start demo in `demo`.

pub mod api_cmds;
pub mod capture_cmds;
pub mod demo;
pub mod radio_cmds;
pub mod store_cmds;

use std::process::ExitCode;

// Exit codes, one table for every command (docs/operator-guide.md, "Exit codes").
// 1: this station's problem (a file, the database, the config); 2: usage (clap).
/// The link was lost or the peer stayed silent.
pub const EXIT_LINK: u8 = 3;
/// No result within `--timeout`.
pub const EXIT_TIMEOUT: u8 = 4;
/// The station's own store failed during a session.
pub const EXIT_LOCAL: u8 = 5;
/// Rows are still to be sent after several sessions.
pub const EXIT_UNFINISHED: u8 = 6;
/// Refused: by the peer, or a bundle refused here (bad bytes, wrong station, unknown sender).
pub const EXIT_REFUSED: u8 = 7;
/// Nothing whole to apply: a replayed capture holds no complete bundle.
pub const EXIT_INCOMPLETE: u8 = 8;
/// Stopped by the operator (Ctrl-C).
pub const EXIT_STOPPED: u8 = 130;

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
    /// Serve the blueprint's web services: getdata and putdata over JSON-RPC and JSON.
    Serve(api_cmds::ServeArgs),
    /// Users of the web services.
    #[command(subcommand)]
    User(api_cmds::UserCommand),
    /// Stations announcing themselves on the LAN (mDNS), for `sync --tcp` or `sync --peer`.
    Discover(api_cmds::DiscoverArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Store(cmd) => store_cmds::run(cmd),
        Command::Radio(cmd) => radio_cmds::run(cmd),
        Command::Capture(cmd) => capture_cmds::run_capture(cmd),
        Command::Replay(args) => capture_cmds::run_replay(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => api_cmds::run_serve(args),
        Command::User(cmd) => api_cmds::run_user(cmd),
        Command::Discover(args) => api_cmds::run_discover(args),
    }
}
