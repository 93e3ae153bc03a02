//! Station store and file-sync commands: init, track, peer, export, import,
//! status, log, conflicts, clone, dict.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use radiosync::delta::StationId;
use radiosync::store::{ImportReport, Store};

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Create radiosync's tables and this station's UUID (once; running it again keeps the UUID).
    Init {
        #[arg(long)]
        db: PathBuf,
        /// Station name (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Amateur radio callsign the station identifies with.
        #[arg(long)]
        callsign: Option<String>,
    },
    /// Put tables under sync (they need uuid, modified_on and deleted columns).
    Track {
        #[arg(long)]
        db: PathBuf,
        /// Tables to track.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        tables: Vec<String>,
        /// Track every table that has the blueprint columns.
        #[arg(long)]
        all: bool,
        /// Site-local columns that are not synced (a remote row gets a fresh local value).
        #[arg(long, value_delimiter = ',', default_value = "id")]
        local_columns: Vec<String>,
        /// How conflicts on these tables are decided, the same at every station:
        /// `newer` (default), `station:NAME` (that station's versions win, then newer),
        /// or `sql:EXPR` over versions a and b, true when a wins (e.g. `sql:a.qty > b.qty`).
        #[arg(long)]
        conflict: Option<String>,
        /// Priority class of these tables: higher classes go first in every
        /// session, so a sync cut short has delivered them (default 0).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
    },
    /// Stations heard on the radio by their beacons (`run --beacon` there): when,
    /// what they hold, and whether each is a registered peer.
    Heard {
        #[arg(long)]
        db: PathBuf,
    },
    /// Before keying up: what a sync with PEER would send, per priority class and
    /// table, in bytes and estimated airtime on PROFILE's channel.
    Plan {
        #[arg(long)]
        db: PathBuf,
        /// The peer's name.
        #[arg(long)]
        peer: String,
        /// Firmware profile (name or file) of the link.
        #[arg(long)]
        profile: String,
        /// Expected bit error rate of the channel (e.g. 1e-4).
        #[arg(long, default_value_t = 0.0)]
        ber: f64,
        /// Expected share of frames lost whole, 0 to 1 (collisions, fades).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
    },
    /// Stop syncing a table (its triggers and radiosync's records of it go; the table stays).
    Untrack {
        #[arg(long)]
        db: PathBuf,
        table: String,
    },
    /// Registered peers.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Print this station's card: one line with name, callsign, UUID and public key,
    /// for `peer add --card` at the other stations.
    Card {
        #[arg(long)]
        db: PathBuf,
    },
    /// Write what a peer lacks (or, with --since, rows by age) to a bundle file.
    Export {
        #[arg(long)]
        db: PathBuf,
        /// The peer the bundle is for.
        #[arg(long, required_unless_present_any = ["since", "broadcast"])]
        peer: Option<String>,
        /// Export full rows with modified_on >= TIME, importable by any peer; claims nothing.
        #[arg(long)]
        since: Option<String>,
        /// One file for several peers (comma-separated names): what all of them lack, signed,
        /// for a USB stick that visits each (`import` at each takes it).
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["peer", "since", "tables"])]
        broadcast: Vec<String>,
        /// Only these tables (the blueprint's per-module export); the bundle then claims
        /// nothing, so a later full export still carries the other tables.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Apply a bundle file: all or nothing.
    Import {
        #[arg(long)]
        db: PathBuf,
        bundle: PathBuf,
    },
    /// Station, tracked tables, pending changes per peer, last sync.
    Status {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One line per sync transaction.
    Log {
        #[arg(long)]
        db: PathBuf,
    },
    /// Versions that lost a conflict, kept for review.
    Conflicts {
        #[arg(long)]
        db: PathBuf,
    },
    /// Copy a station into a new file with its own UUID (laptops imaged from one database);
    /// the two are registered as peers that already share everything.
    Clone {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        to: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        callsign: Option<String>,
    },
    /// The zstd dictionary bundles use.
    #[command(subcommand)]
    Dict(DictCommand),
    /// Write the embedded sample data (100 rows of each of 8 Sahana Eden tables) to a new
    /// database, to try radiosync without one of your own.
    Sample {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PeerCommand {
    /// Register a peer station from its card (`radiosync card` there), or by
    /// UUID without authentication (--no-auth).
    Add {
        #[arg(long)]
        db: PathBuf,
        /// The peer's card line: name, callsign, UUID and public key.
        #[arg(long, conflicts_with_all = ["uuid", "no_auth"])]
        card: Option<String>,
        /// Name to register it under (default: the card's).
        #[arg(long, required_unless_present = "card")]
        name: Option<String>,
        /// The peer's UUID, with --no-auth.
        #[arg(long, requires = "no_auth")]
        uuid: Option<String>,
        #[arg(long)]
        callsign: Option<String>,
        /// Sync with this peer without authentication: anyone who copies its UUID
        /// can pose as it. `status` flags such peers.
        #[arg(long, requires = "uuid")]
        no_auth: bool,
        /// Whether it may push changes here (yes: default).
        #[arg(long, value_parser = yes_no)]
        push: Option<bool>,
        /// The tables exchanged with it, both ways: comma-separated, or `all`
        /// (default). Set the same list at the peer.
        #[arg(long, value_parser = table_list)]
        tables: Option<TableList>,
    },
    /// List peers: name, uuid, callsign, last sync, sync count.
    List {
        #[arg(long)]
        db: PathBuf,
    },
    /// Change a registered peer's name or callsign.
    Edit {
        #[arg(long)]
        db: PathBuf,
        /// The peer's current name.
        name: String,
        #[arg(long)]
        rename: Option<String>,
        /// Callsign; an empty value removes it.
        #[arg(long)]
        callsign: Option<String>,
        /// Set its key from its card (the card's UUID must be the peer's).
        #[arg(long, conflicts_with = "no_auth")]
        card: Option<String>,
        /// Remove its key: sync without authentication.
        #[arg(long)]
        no_auth: bool,
        /// Whether it may push changes here.
        #[arg(long, value_parser = yes_no)]
        push: Option<bool>,
        /// The tables exchanged with it, both ways: comma-separated, or `all`.
        #[arg(long, value_parser = table_list)]
        tables: Option<TableList>,
    },
    /// Forget a peer: what it confirmed, asked for and left half-sent goes with it.
    Remove {
        #[arg(long)]
        db: PathBuf,
        name: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum DictCommand {
    /// Train a new dictionary from the tracked rows (peers use it once they advertise it).
    Retrain {
        #[arg(long)]
        db: PathBuf,
    },
    /// Write the station's dictionary to a file, to publish it: with it anyone can
    /// read this station's frames (`capture show --decode --dict FILE`).
    Export {
        #[arg(long)]
        db: PathBuf,
        /// Where to write the dictionary (zstd's raw dictionary bytes).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `--tables`: `all`, or table names separated by commas.
#[derive(Clone, Debug)]
pub struct TableList(Option<Vec<String>>);

fn table_list(s: &str) -> Result<TableList, String> {
    if s.trim() == "all" {
        return Ok(TableList(None));
    }
    let names: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err("give table names separated by commas, or `all`".into());
    }
    Ok(TableList(Some(names)))
}

/// How `peer list` and `status` show a peer's tables.
fn tables_text(tables: &Option<Vec<String>>) -> String {
    tables.as_ref().map_or("all".into(), |t| t.join(","))
}

/// A callsign as AX.25 carries it (upper case, `-SSID` 0..15), refused early if it is not one.
fn callsign_arg(c: Option<String>) -> anyhow::Result<Option<String>> {
    c.map(|c| {
        c.parse::<radiosync::frame::ax25::Callsign>()
            .map(|call| call.to_string())
            .map_err(|_| {
                anyhow::anyhow!(
                    "{c:?} is not an amateur callsign: 1-6 letters and digits, optionally -SSID 0..15"
                )
            })
    })
    .transpose()
}

/// A conflict policy as typed: `station:NAME` names this station or a peer.
fn policy_arg(s: &Store, text: &str) -> anyhow::Result<radiosync::delta::merge::Policy> {
    use radiosync::delta::merge::Policy;
    if let Some(name) = text.trim().strip_prefix("station:") {
        let name = name.trim();
        let st = s.station();
        let id = if name == st.name || name == st.id.to_string() {
            st.id
        } else if let Some(p) = s.peer_by_name(name)? {
            p.id
        } else if let Ok(id) = StationId::parse(name) {
            id
        } else {
            bail!("station:{name}: no station or registered peer is called {name:?} (see `radiosync peer list`)");
        };
        return Ok(Policy::Station(id));
    }
    Ok(Policy::parse(text)?)
}

/// A policy with station UUIDs shown as names where known.
fn show_policy(s: &Store, p: &radiosync::delta::merge::Policy) -> String {
    use radiosync::delta::merge::Policy;
    match p {
        Policy::Station(id) => {
            let name = if *id == s.station().id {
                Some(s.station().name)
            } else {
                s.peer_by_id(id).ok().flatten().map(|p| p.name)
            };
            match name {
                Some(n) => format!("station:{n} ({id})"),
                None => p.text(),
            }
        }
        other => other.text(),
    }
}

fn open(db: &PathBuf) -> anyhow::Result<Store> {
    Store::open(db).with_context(|| format!("opening {}", db.display()))
}

/// A checked file's payload: a reconciliation file or a bundle.
fn import_payload(
    s: &mut Store,
    bytes: &[u8],
) -> Result<Option<ImportReport>, radiosync::store::StoreError> {
    if radiosync::recon::file::ReconFile::is_recon(bytes) {
        s.import_file(bytes).map(|(what, report)| {
            println!("{what}");
            report
        })
    } else {
        s.import_bundle_bytes(bytes).map(Some)
    }
}

pub fn print_report(r: &ImportReport) {
    println!(
        "from {}: {} applied, {} already held, {} kept local, {} conflicts, {} asked in full",
        r.peer_name, r.applied, r.skipped, r.kept_local, r.conflicts, r.wanted
    );
    for (t, n, applied, c) in &r.per_table {
        println!("  {t}: {n} rows in, {applied} applied, {c} conflicts");
    }
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Init { db, name, callsign } => {
            let callsign = callsign_arg(callsign)?;
            let s = Store::init(&db, name.as_deref(), callsign.as_deref())?;
            let st = s.station();
            println!("station {} ({})", st.name, st.id);
        }
        StoreCommand::Track {
            db,
            tables,
            all,
            local_columns,
            conflict,
            priority,
        } => {
            let mut s = open(&db)?;
            let names = if all {
                let names = s.syncable_tables()?;
                if names.is_empty() {
                    bail!(
                        "no table in {} has uuid, modified_on and deleted columns",
                        db.display()
                    );
                }
                names
            } else {
                tables
            };
            let tagged = s.track(&names, &local_columns)?;
            if let Some(p) = priority {
                for n in &names {
                    s.set_priority(n, p)?;
                }
                println!("priority {p}: {}", names.join(", "));
            }
            if let Some(text) = conflict {
                let policy = policy_arg(&s, &text)?;
                for n in &names {
                    s.set_policy(n, policy.clone())?;
                }
                println!("conflict policy {}", show_policy(&s, &policy));
            }
            println!(
                "tracking {} ({} existing rows tagged); schema {:08x}",
                names.join(", "),
                tagged,
                s.schema_fingerprint().0
            );
            // A new dictionary is one the peers do not have yet: only when rows were
            // added (not for a priority or policy on tables already tracked).
            if tagged > 0 || s.dictionary()?.is_none() {
                match s.retrain_dictionary() {
                    Ok(d) => println!("dictionary {:08x} ({} bytes)", d.id, d.bytes.len()),
                    Err(e) => println!("no dictionary: {e}"),
                }
            }
        }
        StoreCommand::Peer(PeerCommand::Add {
            db,
            card,
            name,
            uuid,
            callsign,
            no_auth,
            push,
            tables,
        }) => {
            let mut s = open(&db)?;
            let (name, id) = match (card, uuid) {
                (Some(line), _) => {
                    let mut card = radiosync::auth::Card::parse(&line)?;
                    if let Some(c) = callsign {
                        card.callsign = callsign_arg(Some(c))?;
                    }
                    let name = s.add_peer_card(&card, name.as_deref())?;
                    println!(
                        "peer {name} ({}) added with key {}",
                        card.station,
                        card.key.short()
                    );
                    (name, card.station)
                }
                (None, Some(uuid)) if no_auth => {
                    let callsign = callsign_arg(callsign)?;
                    let name = name.expect("clap requires --name without --card");
                    let id = StationId::parse(&uuid)
                        .map_err(|_| radiosync::store::StoreError::BadUuid(uuid.clone()))?;
                    s.add_peer(&name, id, callsign.as_deref())?;
                    println!("peer {name} ({id}) added WITHOUT authentication (--no-auth)");
                    (name, id)
                }
                _ => bail!(
                    "give the peer's card (--card LINE, from `radiosync card` there), or \
                     --uuid with --no-auth to sync without authentication"
                ),
            };
            if let Some(p) = push {
                s.set_peer_push(&id, p)?;
            }
            if let Some(TableList(t)) = tables {
                s.set_peer_tables(&id, t.as_deref())?;
                println!("peer {name} shares tables: {}", tables_text(&t));
            }
        }
        StoreCommand::Heard { db } => {
            let s = open(&db)?;
            let heard = s.heard()?;
            if heard.is_empty() {
                println!(
                    "no station heard yet (stations announce with `radiosync run --beacon 10m`)"
                );
            }
            for h in &heard {
                use radiosync::store::Registration;
                let status = match &h.registration {
                    Registration::Unknown => {
                        "not registered: ask for its card (`radiosync card` there), then \
                         `peer add --card LINE`"
                            .to_string()
                    }
                    Registration::Peer(n) | Registration::PeerWithoutKey(n) => {
                        let ours = s.fingerprint_for(&h.station)?;
                        format!(
                            "peer {n}{}; content {}",
                            if matches!(h.registration, Registration::PeerWithoutKey(_)) {
                                " (--no-auth)"
                            } else {
                                ""
                            },
                            if ours == h.fingerprint {
                                "the same as here"
                            } else {
                                "differs: sync"
                            }
                        )
                    }
                    Registration::AnotherKey(n) => format!(
                        "ANOTHER KEY than registered peer {n}: an impostor, or its key changed \
                         (compare its card)"
                    ),
                };
                println!(
                    "{}  {} {}({})  {} rows, change counter {}, key {}, heard {} time(s) since {}\n    {status}",
                    h.last_heard,
                    h.name,
                    if h.callsign.is_empty() {
                        String::new()
                    } else {
                        format!("{} ", h.callsign)
                    },
                    h.station,
                    h.rows,
                    h.changes,
                    if h.key.is_empty() { "none" } else { &h.key },
                    h.count,
                    h.first_heard
                );
            }
        }
        StoreCommand::Plan {
            db,
            peer,
            profile,
            ber,
            loss,
        } => {
            if !(0.0..1.0).contains(&ber) || !(0.0..1.0).contains(&loss) {
                bail!("--ber and --loss are fractions from 0 to below 1");
            }
            let s = open(&db)?;
            let p = s
                .peer_by_name(&peer)?
                .with_context(|| format!("no peer named {peer:?}: see `radiosync peer list`"))?;
            let prof = radiosync::profile::Profile::load(&profile)?;
            let cfg = radiosync::arq::ArqConfig::from_profile(&prof);
            let air = |bytes: &[usize]| cfg.session_airtime_on(bytes, ber, loss);
            // One bundle alone: the session's cost with it, less the session's own.
            let one = |b: u64| air(&[b as usize]).saturating_sub(air(&[]));
            let plan = s.plan_for(&p.id)?;
            println!(
                "plan for {peer} over {} ({} bit/s, TXDELAY {} ms), BER {ber}, frame loss {:.0} %",
                prof.name,
                prof.bitrate,
                prof.txdelay_ms,
                loss * 100.0
            );
            println!(
                "{:>8}  {:<24} {:>8} {:>10} {:>12}",
                "priority", "table", "rows", "bytes", "airtime"
            );
            let mut bundles = Vec::new();
            for c in &plan {
                for t in &c.tables {
                    println!(
                        "{:>8}  {:<24} {:>8} {:>10} {:>10.1} s",
                        c.priority,
                        t.table,
                        t.rows,
                        t.bytes,
                        one(t.bytes).as_secs_f64()
                    );
                }
                println!(
                    "{:>8}  {:<24} {:>8} {:>10} {:>10.1} s",
                    c.priority,
                    "(class, one bundle)",
                    c.tables.iter().map(|t| t.rows).sum::<u64>(),
                    c.bytes,
                    one(c.bytes).as_secs_f64()
                );
                bundles.push(c.bytes as usize);
            }
            if plan.is_empty() {
                println!("nothing to send: {peer} has confirmed everything");
            }
            // The peer's own changes come on top: unknown here, counted as none.
            bundles.push(0);
            println!(
                "session: {} bytes in {} bundle(s), about {:.1} s of airtime (both stations \
                 keyed; what {peer} sends back comes on top)",
                plan.iter().map(|c| c.bytes).sum::<u64>(),
                plan.len(),
                air(&bundles).as_secs_f64()
            );
        }
        StoreCommand::Untrack { db, table } => {
            let mut s = open(&db)?;
            s.untrack(&table)?;
            println!("{table} is no longer synced (the table itself is untouched)");
        }
        StoreCommand::Peer(PeerCommand::Edit {
            db,
            name,
            rename,
            callsign,
            card,
            no_auth,
            push,
            tables,
        }) => {
            let callsign = match callsign {
                Some(c) if c.is_empty() => Some(None),
                Some(c) => Some(callsign_arg(Some(c))?),
                None => None,
            };
            let mut s = open(&db)?;
            s.edit_peer(
                &name,
                rename.as_deref(),
                callsign.as_ref().map(|c| c.as_deref()),
            )?;
            let p = s
                .peer_by_name(rename.as_deref().unwrap_or(&name))?
                .ok_or_else(|| radiosync::store::StoreError::UnknownPeerName(name.clone()))?;
            if let Some(line) = card {
                let card = radiosync::auth::Card::parse(&line)?;
                if card.station != p.id {
                    bail!(
                        "the card is of station {}, but peer {} is {}: a card sets the key \
                         of its own station only",
                        card.station,
                        p.name,
                        p.id
                    );
                }
                s.set_peer_key(&p.id, Some(&card.key))?;
                println!("peer {} key set: {}", p.name, card.key.short());
            }
            if no_auth {
                s.set_peer_key(&p.id, None)?;
                println!("peer {} now syncs WITHOUT authentication", p.name);
            }
            if let Some(v) = push {
                s.set_peer_push(&p.id, v)?;
            }
            if let Some(TableList(t)) = tables {
                s.set_peer_tables(&p.id, t.as_deref())?;
                println!("peer {} shares tables: {}", p.name, tables_text(&t));
            }
            println!(
                "peer {} ({}) callsign {}",
                p.name,
                p.id,
                p.callsign.as_deref().unwrap_or("-")
            );
        }
        StoreCommand::Peer(PeerCommand::Remove { db, name }) => {
            let mut s = open(&db)?;
            s.remove_peer(&name)?;
            println!("peer {name} removed");
        }
        StoreCommand::Peer(PeerCommand::List { db }) => {
            let s = open(&db)?;
            println!(
                "{:<16} {:<36} {:<10} {:<24} {:>5} {:<16} push tables",
                "name", "uuid", "callsign", "last sync", "syncs", "key"
            );
            for p in s.peers()? {
                println!(
                    "{:<16} {:<36} {:<10} {:<24} {:>5} {:<16} {:<4} {}",
                    p.name,
                    p.id.to_string(),
                    p.callsign.as_deref().unwrap_or("-"),
                    p.last_sync.as_deref().unwrap_or("never"),
                    p.sync_count,
                    p.key.map_or("NO AUTH".to_string(), |k| k.short()),
                    if p.may_push { "yes" } else { "no" },
                    tables_text(&p.tables)
                );
            }
        }
        StoreCommand::Export {
            db,
            peer,
            since,
            broadcast,
            tables,
            out,
        } => {
            let s = open(&db)?;
            if !broadcast.is_empty() {
                let cast = s.export_cast(&broadcast)?;
                for (name, why) in &cast.left_out {
                    eprintln!("radiosync: {name} left out of the broadcast: {why}");
                }
                if cast.rows == 0 {
                    println!("nothing to broadcast: no row that those peers lack");
                    return Ok(ExitCode::SUCCESS);
                }
                std::fs::write(&out, &cast.bytes)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!(
                    "wrote a broadcast of {} rows in {} bytes for {} to {}",
                    cast.rows,
                    cast.bytes.len(),
                    cast.peers.join(", "),
                    out.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            for t in &tables {
                if !s.tables().iter().any(|i| &i.name == t) {
                    bail!("table {t} is not tracked in {}", db.display());
                }
            }
            // Every file is signed: the receiver checks it against our registered key.
            let key = s.station_key()?.clone();
            let me = s.station().id;
            let seal = |bytes: &[u8]| radiosync::auth::SignedFile::seal(&key, me, bytes);
            let (bytes, rows) = match (since, peer) {
                (None, Some(name)) if !tables.is_empty() => {
                    let p = s
                        .peer_by_name(&name)?
                        .ok_or(radiosync::store::StoreError::UnknownPeerName(name))?;
                    let b = s.export_tables_for(&p.id, &tables)?;
                    let rows: usize = b.tables.iter().map(|t| t.rows.len()).sum();
                    let dict = s.dictionary()?;
                    (
                        radiosync::codec::encode(&b, dict.as_ref(), false)
                            .map_err(radiosync::store::StoreError::Encode)?,
                        rows,
                    )
                }
                (Some(t), _) => {
                    let mut b = s.export_since(&t)?;
                    if !tables.is_empty() {
                        let keep: Vec<u16> = s
                            .tables()
                            .iter()
                            .enumerate()
                            .filter(|(_, i)| tables.contains(&i.name))
                            .map(|(n, _)| n as u16)
                            .collect();
                        b.tables.retain(|t| keep.contains(&t.table));
                    }
                    let rows: usize = b.tables.iter().map(|t| t.rows.len()).sum();
                    let dict = s.dictionary()?;
                    (
                        radiosync::codec::encode(&b, dict.as_ref(), false)
                            .map_err(radiosync::store::StoreError::Encode)?,
                        rows,
                    )
                }
                (None, Some(name)) => {
                    let p = s
                        .peer_by_name(&name)?
                        .ok_or(radiosync::store::StoreError::UnknownPeerName(name))?;
                    // First contact, or a reconciliation under way: a reconciliation file.
                    let mut s = s;
                    if let Some(f) = s.export_file_for(&p.id)? {
                        std::fs::write(&out, seal(&f.bytes))
                            .with_context(|| format!("writing {}", out.display()))?;
                        println!("wrote {} to {}", f.what, out.display());
                        return Ok(ExitCode::SUCCESS);
                    }
                    let rows = s.pending_for(&p.id)?;
                    (s.export_bundle_bytes(&p.id)?, rows as usize)
                }
                (None, None) => bail!("give --peer NAME or --since TIME"),
            };
            let bytes = seal(&bytes);
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {rows} rows in {} bytes to {}",
                bytes.len(),
                out.display()
            );
        }
        StoreCommand::Import { db, bundle } => {
            let mut s = open(&db)?;
            let file =
                std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let imported = match radiosync::store::cast::cast_signer(&file) {
                // A broadcast file: its own checks (signature, signer, base).
                Some(signer) => s.import_cast(&file, &signer).map(Some),
                None => match s.open_file(&file) {
                    Ok(payload) => {
                        let bytes = payload.to_vec();
                        import_payload(&mut s, &bytes)
                    }
                    Err(e) => Err(e),
                },
            };
            match imported {
                Ok(None) => {}
                Ok(Some(r)) => print_report(&r),
                Err(e) if e.is_bundle_fault() => {
                    eprintln!(
                        "radiosync: bundle {} refused, database unchanged: {e}",
                        bundle.display()
                    );
                    return Ok(ExitCode::from(crate::cli::EXIT_REFUSED));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "could not import {} because of a problem on this station (the bundle \
                         itself was not judged); database unchanged",
                        bundle.display()
                    )))
                }
            }
        }
        StoreCommand::Status { db, json } => status(&db, json)?,
        StoreCommand::Card { db } => {
            let s = open(&db)?;
            println!("{}", s.card()?.to_line());
        }
        StoreCommand::Log { db } => {
            let s = open(&db)?;
            println!(
                "{:<24} {:<12} {:<20} {:<5} {:>6} {:>6} {:>5} {:<8} message",
                "time", "peer", "table", "dir", "in", "out", "confl", "result"
            );
            for e in s.log()? {
                println!(
                    "{:<24} {:<12} {:<20} {:<5} {:>6} {:>6} {:>5} {:<8} {}",
                    e.time,
                    e.peer.as_deref().unwrap_or("-"),
                    e.table.as_deref().unwrap_or("*"),
                    e.direction,
                    e.rows_in,
                    e.rows_out,
                    e.conflicts,
                    e.result,
                    e.message
                );
            }
        }
        StoreCommand::Conflicts { db } => {
            let s = open(&db)?;
            let all = s.conflicts()?;
            if all.is_empty() {
                println!("no conflicts");
            }
            for c in all {
                println!(
                    "{} {}/{} peer {}: {} version of {} (writer {}) lost to {} (writer {}) by {}: {}",
                    c.time,
                    c.table,
                    c.uuid,
                    c.peer.as_deref().unwrap_or("-"),
                    c.loser_side,
                    c.loser_modified_on,
                    c.loser_writer,
                    c.winner_modified_on,
                    c.winner_writer,
                    c.policy,
                    c.loser_values
                );
            }
        }
        StoreCommand::Clone {
            from,
            to,
            name,
            callsign,
        } => {
            let callsign = callsign_arg(callsign)?;
            let b = Store::clone_station(&from, &to, &name, callsign.as_deref())?;
            let st = b.station();
            println!(
                "{} is station {} ({}); it and {} are peers sharing everything",
                to.display(),
                st.name,
                st.id,
                from.display()
            );
        }
        StoreCommand::Sample { out } => {
            radiosync::store::sample::write_sample(&out)
                .with_context(|| format!("writing the sample data to {}", out.display()))?;
            println!(
                "wrote the sample data to {} (8 tables with uuid, modified_on and deleted)",
                out.display()
            );
        }
        StoreCommand::Dict(DictCommand::Export { db, out }) => {
            let s = open(&db)?;
            let Some(d) = s.dictionary()? else {
                anyhow::bail!(
                    "{} has no dictionary: it compresses without one, and its frames \
                     decode without one (train one with `dict retrain`)",
                    db.display()
                );
            };
            std::fs::write(&out, &d.bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote dictionary {:08x} ({} bytes) to {}",
                d.id,
                d.bytes.len(),
                out.display()
            );
        }
        StoreCommand::Dict(DictCommand::Retrain { db }) => {
            let mut s = open(&db)?;
            let d = s.retrain_dictionary()?;
            println!(
                "dictionary {:08x} ({} bytes); peers use it after they advertise it",
                d.id,
                d.bytes.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(db: &PathBuf, json: bool) -> anyhow::Result<()> {
    let s = open(db)?;
    let st = s.station();
    let mut tables = Vec::new();
    for t in s.tables() {
        tables.push((t.name.clone(), s.row_count(&t.name)?));
    }
    let mut peers = Vec::new();
    for p in s.peers()? {
        let pending = s.pending_for(&p.id)?;
        peers.push((p, pending));
    }
    let held = s.held_rows()?;
    let quarantined = s.quarantined_rows()?;
    if json {
        let v = serde_json::json!({
            "station": { "name": st.name, "uuid": st.id.to_string(), "callsign": st.callsign },
            "schema": format!("{:08x}", s.schema_fingerprint().0),
            "clock": s.clock()?,
            "tables": tables.iter().zip(s.tables()).map(|((n, r), t)| serde_json::json!({"name": n, "rows": r, "conflict_policy": t.policy.text()})).collect::<Vec<_>>(),
            "peers": peers.iter().map(|(p, pending)| serde_json::json!({
                "name": p.name, "uuid": p.id.to_string(), "callsign": p.callsign,
                "last_sync": p.last_sync, "sync_count": p.sync_count, "pending_rows": pending,
                "verified_at": p.verified_at, "differs_since": p.differs_since,
                "key": p.key.map(|k| k.to_string()), "authenticated": p.key.is_some(),
                "may_push": p.may_push, "tables": p.tables,
            })).collect::<Vec<_>>(),
            "problems": s.problems().iter().map(|(t, why)| serde_json::json!({"table": t, "problem": why})).collect::<Vec<_>>(),
            "held": held.iter().map(|h| serde_json::json!({"table": h.table, "uuid": h.uuid, "reason": h.reason, "since": h.since})).collect::<Vec<_>>(),
            "quarantined": quarantined.iter().map(|q| serde_json::json!({"table": q.table, "uuid": q.uuid, "peer": q.peer, "reason": q.reason, "since": q.since})).collect::<Vec<_>>(),
            "read_only": s.is_read_only(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("station   {} ({})", st.name, st.id);
    println!("callsign  {}", st.callsign.as_deref().unwrap_or("-"));
    println!("schema    {:08x}", s.schema_fingerprint().0);
    println!(
        "tables    {}",
        if tables.is_empty() {
            "none tracked"
        } else {
            ""
        }
    );
    let prios = s.table_priorities()?;
    for (((n, r), t), p) in tables.iter().zip(s.tables()).zip(prios) {
        let prio = if p == 0 {
            String::new()
        } else {
            format!("  priority {p}")
        };
        if t.policy == radiosync::delta::merge::Policy::Newer {
            println!("  {n:<24} {r:>8} rows{prio}");
        } else {
            println!(
                "  {n:<24} {r:>8} rows{prio}  conflicts: {}",
                show_policy(&s, &t.policy)
            );
        }
    }
    println!("peers     {}", if peers.is_empty() { "none" } else { "" });
    for (p, pending) in &peers {
        let check = match (&p.differs_since, &p.verified_at) {
            (Some(since), _) => format!("CONTENTS DIFFER since {since}"),
            (None, Some(at)) => format!("verified {at}"),
            (None, None) => "never verified".into(),
        };
        let trust = match (p.key.is_some(), p.may_push) {
            (true, true) => "",
            (true, false) => ", may not push",
            (false, true) => ", NO AUTHENTICATION (--no-auth: anyone with its UUID can pose as it)",
            (false, false) => ", NO AUTHENTICATION (--no-auth), may not push",
        };
        let shared = match &p.tables {
            Some(t) => format!(", tables {}", t.join(",")),
            None => String::new(),
        };
        println!(
            "  {:<16} {} pending {:>6} rows, last sync {}, {check}{trust}{shared}",
            p.name,
            p.id,
            pending,
            p.last_sync.as_deref().unwrap_or("never")
        );
    }
    for (t, why) in s.problems() {
        println!("problem   {t}: {why}");
    }
    for h in &held {
        let what = if h.uuid.is_empty() {
            String::new()
        } else {
            format!(" {}", h.uuid)
        };
        println!(
            "held      {}{what}: {} (since {})",
            h.table, h.reason, h.since
        );
    }
    for q in &quarantined {
        println!(
            "quarantined {} {} from {}: {} (since {}; retried at every import)",
            q.table, q.uuid, q.peer, q.reason, q.since
        );
    }
    if s.is_read_only() {
        println!("(read-only: the file is not writable here; capture was not checked)");
    }
    Ok(())
}

fn yes_no(v: &str) -> Result<bool, String> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{v:?}: say yes or no")),
    }
}
