//! The web services and their users: `serve`, `user add|list|remove`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use radiosync::api::{http, Service};
use radiosync::store::{Role, Store};

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user of the web services; the password is read from standard input.
    Add {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        name: String,
        /// read: getdata only; write: getdata and putdata.
        #[arg(long, value_parser = role)]
        role: RoleArg,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List the users (names, roles; never passwords).
    List {
        #[arg(long)]
        db: PathBuf,
    },
    /// Remove a user.
    Remove {
        #[arg(long)]
        db: PathBuf,
        name: String,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct RoleArg(Role);

fn role(s: &str) -> Result<RoleArg, String> {
    Role::parse(s)
        .map(RoleArg)
        .ok_or_else(|| format!("`{s}` is not a role: read or write"))
}

/// Serve the blueprint's web services (getdata/putdata over JSON-RPC and JSON).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[arg(long)]
    pub db: PathBuf,
    /// Where to listen, HOST:PORT (127.0.0.1:8000 serves this machine only).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000")]
    pub listen: String,
}

/// List the radiosync stations announcing themselves on the LAN (mDNS).
#[derive(clap::Args, Debug)]
pub struct DiscoverArgs {
    /// Say which stations are registered peers of this station (and whether their keys match).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// How long to listen for answers.
    #[arg(long, value_parser = crate::cli::radio_cmds::parse_duration, default_value = "3s")]
    pub wait: std::time::Duration,
}

pub fn run_discover(args: DiscoverArgs) -> anyhow::Result<ExitCode> {
    let store = args.db.as_ref().map(open).transpose()?;
    let found = radiosync::discovery::browse(args.wait, None)?;
    if found.is_empty() {
        println!(
            "no station answered within {} s (stations announce while `radiosync run \
             --tcp-listen` runs; mDNS does not cross routers)",
            args.wait.as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<36} {:<16} {:<10} {:<24} here",
        "name", "uuid", "key", "callsign", "address"
    );
    for f in found {
        let here = match &store {
            None => String::new(),
            Some(s) if f.station == s.station().id => "this station".into(),
            Some(s) => match s.peer_by_id(&f.station)? {
                None => "not registered (peer add --card with its card)".into(),
                Some(p) => match &p.key {
                    Some(k) if k.short() == f.key => format!("peer {}", p.name),
                    Some(_) => format!(
                        "peer {}, but it announces ANOTHER KEY: not the registered station",
                        p.name
                    ),
                    None => format!("peer {} (registered without a key)", p.name),
                },
            },
        };
        println!(
            "{:<20} {:<36} {:<16} {:<10} {:<24} {here}",
            f.name,
            f.station,
            f.key,
            f.callsign.as_deref().unwrap_or("-"),
            f.addrs.first().map_or("-".to_string(), |a| a.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_user(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Add {
            db,
            name,
            role,
            password_stdin,
        } => {
            debug_assert!(password_stdin);
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the password from standard input")?;
            let password = text.lines().next().unwrap_or("");
            if password.is_empty() {
                bail!(
                    "no password on standard input (e.g. `echo \"$PW\" | radiosync user add ...`)"
                );
            }
            let s = open(&db)?;
            s.add_user(&name, role.0, password)?;
            println!("user {name} added ({})", role.0.as_str());
        }
        UserCommand::List { db } => {
            let s = open(&db)?;
            println!("{:<24} {:<6} added", "name", "role");
            for u in s.users()? {
                println!("{:<24} {:<6} {}", u.name, u.role.as_str(), u.created_on);
            }
        }
        UserCommand::Remove { db, name } => {
            let s = open(&db)?;
            s.remove_user(&name)?;
            println!("user {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(db: &PathBuf) -> anyhow::Result<Store> {
    if !db.exists() {
        bail!("{} does not exist (radiosync init --db FILE)", db.display());
    }
    Store::open(db).with_context(|| format!("opening {}", db.display()))
}

/// Binds the web services on `listen` and serves them until Ctrl-C.
pub async fn serve_until(
    db: &PathBuf,
    listen: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Arc::new(Service::new(open(db)?));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let at = listener.local_addr()?;
    println!(
        "web services of {} on http://{at}{} (JSON-RPC) and http://{at}/sahana/admin/call/json/FUNCTION",
        db.display(),
        http::JSONRPC_PATH
    );
    http::serve(listener, service, shutdown).await?;
    Ok(())
}

pub fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve_until(&args.db, &args.listen, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    Ok(ExitCode::SUCCESS)
}
