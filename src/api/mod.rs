//! The blueprints' web services (`../shared/seeds`, SynchronisationImplementation):
//! `getdata` and `putdata` over JSON-RPC and plain JSON, for applications and
//! other Sahana instances. This module is the service itself, without HTTP:
//! argument checks, users and their roles, the localhost bypass, the
//! failed-login limit, and the store calls. `http` serves it.
//!
//! As the blueprint says, a function's failure is its *result*: an error string
//! (a client tests `type(result) == str`). JSON-RPC's own `error` is kept for
//! calls that are not the service's (unknown method, wrong arguments).

pub mod http;
pub mod nicedbdump;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::store::{GetScope, Role, Store, StoreError};

/// Failed logins from one address before it must wait.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and how long an address then waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A call that is not the service's: JSON-RPC's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// JSON-RPC error code (-32601 unknown method, -32602 bad arguments).
    pub code: i64,
    /// What is wrong.
    pub message: String,
}

impl CallError {
    fn params(message: impl Into<String>) -> CallError {
        CallError {
            code: -32602,
            message: message.into(),
        }
    }
}

/// A call's arguments: positional (JSON-RPC `params` list) or named (an object,
/// or a GET query).
#[derive(Debug, Clone)]
pub enum Args {
    /// `[uuid, username, password, ...]`.
    Positional(Vec<Json>),
    /// `{"uuid": ..., "username": ..., ...}`.
    Named(serde_json::Map<String, Json>),
}

impl Args {
    fn get(&self, index: usize, name: &str) -> Option<&Json> {
        match self {
            Args::Positional(v) => v.get(index),
            Args::Named(m) => m.get(name),
        }
    }

    fn count(&self) -> usize {
        match self {
            Args::Positional(v) => v.len(),
            Args::Named(m) => m.len(),
        }
    }

    /// A string argument; absent or null is `None`.
    fn text(&self, index: usize, name: &str) -> Result<Option<String>, CallError> {
        match self.get(index, name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(CallError::params(format!("{name} must be a string"))),
        }
    }
}

/// Failed logins per address (the blueprint's API is on the LAN: a guesser
/// gets `MAX_FAILURES` tries a minute).
#[derive(Debug, Default)]
struct Limiter {
    failures: HashMap<IpAddr, (u32, Instant)>,
}

/// Whom the limiter counts: the IPv4 address (also when mapped into IPv6), or
/// an IPv6 address's /64, which one host can hop around in.
fn limiter_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Limiter {
    fn blocked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let ip = limiter_key(ip);
        self.failures
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
        match self.failures.get(&ip) {
            Some((n, since)) if *n >= MAX_FAILURES => {
                Some(FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(*since)))
            }
            _ => None,
        }
    }

    fn failed(&mut self, ip: IpAddr, now: Instant) {
        let ip = limiter_key(ip);
        let e = self.failures.entry(ip).or_insert((0, now));
        e.0 += 1;
        // The wait runs from the failure that reached the limit.
        if e.0 >= MAX_FAILURES {
            e.1 = now;
        }
    }
}

/// The web services on one station database.
pub struct Service {
    store: Mutex<Store>,
    limiter: Mutex<Limiter>,
}

/// Calls from this machine skip the password, as the blueprint says.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

impl Service {
    /// The service on the station database at `db` (its own connection).
    pub fn open(db: &Path) -> Result<Service, StoreError> {
        Ok(Service::new(Store::open(db)?))
    }

    /// The service on an open store.
    pub fn new(store: Store) -> Service {
        Service {
            store: Mutex::new(store),
            limiter: Mutex::new(Limiter::default()),
        }
    }

    /// One call from `from` at `now`: the function's result (an error string
    /// when it failed, as the blueprint has it), or a call error.
    pub fn call(
        &self,
        from: IpAddr,
        now: Instant,
        method: &str,
        args: &Args,
    ) -> Result<Json, CallError> {
        let role = match method {
            "getdata" => Role::Read,
            "putdata" => Role::Write,
            other => {
                return Err(CallError {
                    code: -32601,
                    message: format!(
                        "no method {other:?}: the web services are getdata and putdata"
                    ),
                })
            }
        };
        let expected = if role == Role::Read { 3..=4 } else { 4..=4 };
        if matches!(args, Args::Positional(_)) && !expected.contains(&args.count()) {
            return Err(CallError::params(format!(
                "{method} takes (uuid, username, password{}), {} given",
                if role == Role::Read {
                    ", timestamp=None"
                } else {
                    ", nicedbdump"
                },
                args.count()
            )));
        }
        let caller = match args.text(0, "uuid")? {
            Some(u) if !u.trim().is_empty() && u.len() <= 64 => u,
            _ => {
                return Ok(Json::String(
                    "uuid (the calling machine's, 1 to 64 characters) is required".into(),
                ))
            }
        };
        let username = args.text(1, "username")?.unwrap_or_default();
        let password = args.text(2, "password")?.unwrap_or_default();
        if let Err(why) = self.authorise(from, now, &username, &password, role) {
            return Ok(Json::String(why));
        }
        // What a caller was given is remembered per machine uuid; from another
        // address, per user too, so one user cannot move another's mark.
        let caller = if is_local(from) {
            caller
        } else {
            format!("{username}/{caller}")
        };
        let result = match role {
            Role::Read => {
                let timestamp = args.text(3, "timestamp")?;
                self.getdata(&caller, timestamp.as_deref())
            }
            Role::Write => {
                let Some(dump) = args.get(3, "nicedbdump") else {
                    return Ok(Json::String("nicedbdump is required".into()));
                };
                self.putdata(&caller, dump)
            }
        };
        Ok(result.unwrap_or_else(Json::String))
    }

    fn authorise(
        &self,
        from: IpAddr,
        now: Instant,
        username: &str,
        password: &str,
        need: Role,
    ) -> Result<(), String> {
        if is_local(from) {
            return Ok(());
        }
        let blocked = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blocked(from, now);
        if let Some(wait) = blocked {
            return Err(format!(
                "too many failed logins from {from}: try again in {} s",
                wait.as_secs().max(1)
            ));
        }
        let record = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .login_record(username)
            .map_err(|e| format!("cannot check the login: {e}"))?;
        // The slow hash runs holding no lock: a guesser does not stall other callers.
        match record.verify(password) {
            None => {
                self.limiter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .failed(from, now);
                Err("authentication failed: wrong username or password".into())
            }
            Some(Role::Read) if need == Role::Write => Err(format!(
                "user {username} may read only: putdata needs a write user"
            )),
            Some(_) => Ok(()),
        }
    }

    fn getdata(&self, caller: &str, timestamp: Option<&str>) -> Result<Json, String> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        // Writes the application made since the last check count.
        store.check_capture().map_err(|e| e.to_string())?;
        let scope = match timestamp.map(str::trim) {
            None | Some("None") | Some("null") => GetScope::SinceLastCall,
            Some("") | Some("0") => GetScope::After(""),
            Some(t) => {
                if crate::delta::time::parse_millis(t).is_none() {
                    return Err(format!(
                        "timestamp {t:?} is not a time: give \"YYYY-MM-DD HH:MM:SS\" (UTC)"
                    ));
                }
                GetScope::After(t)
            }
        };
        // The mark saved is what was held *before* the rows were read: a row
        // written meanwhile (by the application, or a peer on another link)
        // may come twice, never not at all.
        let held = store.vector().map_err(|e| e.to_string())?;
        let tables = store.get_rows(caller, scope).map_err(|e| e.to_string())?;
        if matches!(scope, GetScope::SinceLastCall) {
            store
                .note_api_call(caller, &held)
                .map_err(|e| e.to_string())?;
        }
        Ok(nicedbdump::to_json(&tables))
    }

    fn putdata(&self, caller: &str, dump: &Json) -> Result<Json, String> {
        let tables = nicedbdump::parse(dump)?;
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.check_capture().map_err(|e| e.to_string())?;
        let report = store.put_rows(caller, &tables).map_err(|e| e.to_string())?;
        // Rows the database refused are not "added": say so (the rest is in).
        if report.quarantined > 0 {
            return Ok(Json::String(format!(
                "{} row(s) applied; {} row(s) refused by this station's database (a \
                 constraint) and held for review: `radiosync status` on the station",
                report.applied, report.quarantined
            )));
        }
        Ok(Json::Bool(true))
    }
}
