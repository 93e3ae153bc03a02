//! Finding stations on the LAN without IP configuration, as the blueprints'
//! daemonX did with Zeroconf: `run --tcp-listen` announces the station by
//! mDNS/DNS-SD (`_radiosync._tcp.local.`, TXT: uuid, name, callsign, key), and
//! `discover` and `sync --peer NAME` browse for it.
//!
//! An announcement is a claim, not an identity: anyone on the LAN can announce
//! any UUID. It only says where to connect; the session's handshake then proves
//! the station by its registered key, as on the radio.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::auth::Card;
use crate::delta::StationId;

/// The DNS-SD service type of radiosync's TCP sync.
pub const SERVICE_TYPE: &str = "_radiosync._tcp.local.";

/// How long `discover` and `sync --peer` listen for answers by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(3);

/// Why announcing or browsing failed.
#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct DiscoveryError(String);

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError(e.to_string())
    }
}

/// A station heard on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The UUID it announces.
    pub station: StationId,
    /// Its name.
    pub name: String,
    /// Its callsign, if it announces one.
    pub callsign: Option<String>,
    /// The short form of its public key (as `peer add` prints it).
    pub key: String,
    /// Where it listens (one per address it announced).
    pub addrs: Vec<SocketAddr>,
}

/// The station's announcement; withdrawn when dropped.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Set to `loopback` to keep mDNS on this machine's loopback interface (the
/// tests do: they send no traffic beyond loopback).
pub const SCOPE_ENV: &str = "RADIOSYNC_MDNS";

fn daemon(loopback_only: bool) -> Result<ServiceDaemon, DiscoveryError> {
    let d = ServiceDaemon::new()?;
    let loopback_only =
        loopback_only || std::env::var(SCOPE_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("loopback"));
    if loopback_only {
        d.disable_interface(IfKind::All)?;
    }
    // Stations on one machine (a laptop running two) find each other too.
    d.enable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    Ok(d)
}

/// Announces the station of `card`, listening at `listen` (an unspecified
/// address: every interface's addresses).
pub fn announce(card: &Card, listen: SocketAddr) -> Result<Announcer, DiscoveryError> {
    // An address only this machine can reach is announced only here.
    let d = daemon(listen.ip().is_loopback())?;
    let id = card.station.to_string();
    // Instance names must be unique on the LAN: the name and the UUID's start.
    let instance = format!("{} {}", card.name, &id[..8]);
    let host = format!("radiosync-{}.local.", &id[..8]);
    let mut txt = vec![
        ("uuid".to_string(), id.clone()),
        ("name".to_string(), card.name.clone()),
        ("key".to_string(), card.key.short()),
    ];
    if let Some(c) = &card.callsign {
        txt.push(("callsign".to_string(), c.clone()));
    }
    let info = if listen.ip().is_unspecified() {
        ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", listen.port(), &txt[..])?
            .enable_addr_auto()
    } else {
        ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            listen.ip(),
            listen.port(),
            &txt[..],
        )?
    };
    let fullname = info.get_fullname().to_string();
    d.register(info)?;
    Ok(Announcer {
        daemon: d,
        fullname,
    })
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // Say goodbye so browsers drop us at once, then stop the daemon's thread.
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

/// A TXT value from the network, fit to print: control characters (terminal
/// escapes) replaced, at most 64 characters.
fn printable(v: &str) -> String {
    v.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn found(info: &ServiceInfo) -> Option<Found> {
    let station = StationId::parse(info.get_property_val_str("uuid")?).ok()?;
    let mut addrs: Vec<SocketAddr> = info
        .get_addresses()
        .iter()
        .map(|ip| SocketAddr::new(*ip, info.get_port()))
        .collect();
    // IPv4 first, then by address: a stable order, and the likelier route first.
    addrs.sort_by_key(|a| (!a.is_ipv4(), a.ip().is_loopback(), *a));
    Some(Found {
        station,
        name: printable(info.get_property_val_str("name").unwrap_or("?")),
        callsign: info.get_property_val_str("callsign").map(printable),
        key: printable(info.get_property_val_str("key").unwrap_or("")),
        addrs,
    })
}

/// Stations that answer within `wait`, one entry per (UUID, key): a second
/// station announcing a UUID with another key is listed apart, never merged.
/// With `stop_at`, returns as soon as that UUID is found (with that key, when
/// one is given).
pub fn browse(
    wait: Duration,
    stop_at: Option<(StationId, Option<&str>)>,
) -> Result<Vec<Found>, DiscoveryError> {
    let d = daemon(false)?;
    let events = d.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + wait;
    let mut by_id: BTreeMap<(StationId, String), Found> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        if let ServiceEvent::ServiceResolved(info) = event {
            if let Some(f) = found(&info) {
                let (id, key) = (f.station, f.key.clone());
                by_id
                    .entry((id, key.clone()))
                    .and_modify(|known| {
                        for a in &f.addrs {
                            if !known.addrs.contains(a) {
                                known.addrs.push(*a);
                            }
                        }
                    })
                    .or_insert(f);
                let reachable = by_id[&(id, key.clone())]
                    .addrs
                    .iter()
                    .any(|a| usable(a.ip()));
                if reachable
                    && stop_at.is_some_and(|(want, k)| want == id && k.is_none_or(|k| k == key))
                {
                    break;
                }
            }
        }
    }
    let _ = d.stop_browse(SERVICE_TYPE);
    let _ = d.shutdown();
    Ok(by_id.into_values().collect())
}

/// Where the station `id` (with the key whose short form is `key`, when
/// known) listens, if it answers within `wait`. An announcement of `id` with
/// another key is not taken for it.
pub fn find(
    id: StationId,
    key: Option<&str>,
    wait: Duration,
) -> Result<Option<Found>, DiscoveryError> {
    Ok(browse(wait, Some((id, key)))?
        .into_iter()
        .find(|f| f.station == id && key.is_none_or(|k| k == f.key)))
}

/// Whether `ip` is an address this machine can usually connect to (not a
/// link-local IPv6 address, which needs a scope the announcement lacks).
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_text_cannot_drive_the_terminal() {
        assert_eq!(printable("clinic\u{1b}[2Jx"), "clinic?[2Jx");
        assert_eq!(printable(&"a".repeat(100)).len(), 64);
    }
}
