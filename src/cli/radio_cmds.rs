use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum RadioCommand {
    /// The gateway daemon (being written).
    Run,
}

pub fn run(cmd: RadioCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{cmd:?}: not written yet")
}
