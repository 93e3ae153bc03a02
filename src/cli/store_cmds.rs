use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Create radiosync's tables and this station's identity (being written).
    Init,
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{cmd:?}: not written yet")
}
