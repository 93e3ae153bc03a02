//! Two sessions wired through an in-memory lossless message pipe, each with a
//! fake store and a fake disk (kept and partial bundles), cut and restarted at
//! chosen points.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};

use super::reassembly::Violation;
use super::*;
use crate::delta::{SchemaFingerprint, StationId, VersionVector};

const PAD: usize = 40;
const RECORD: usize = 16 + 8 + PAD;

fn sid(b: u8) -> StationId {
    StationId([b; 16])
}

/// A store reduced to what the session needs: change tags per origin. A
/// bundle is the tags the peer lacks, each padded to `RECORD` bytes.
#[derive(Debug, Default)]
struct FakeStore {
    station: StationId,
    tags: BTreeSet<(StationId, u64)>,
    vector: VersionVector,
    peer_vectors: BTreeMap<StationId, VersionVector>,
    imports: BTreeMap<BundleId, u32>,
    refuse: Option<String>,
    schema: u32,
}

impl FakeStore {
    fn new(station: StationId) -> Self {
        FakeStore {
            station,
            schema: 0xfeed_f00d,
            ..Default::default()
        }
    }

    /// Order-independent over the content (its tags), as the real one is.
    fn fingerprint(&self) -> u64 {
        self.tags.iter().fold(0u64, |acc, (o, seq)| {
            let h = u64::from_le_bytes(o.0[..8].try_into().unwrap())
                .rotate_left(17)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ seq.wrapping_mul(0xff51_afd7_ed55_8ccd);
            acc.wrapping_add(h)
        })
    }

    fn item(salt: u64, (o, seq): (StationId, u64)) -> u32 {
        let h = (u64::from_le_bytes(o.0[..8].try_into().unwrap()) ^ salt)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ seq.wrapping_mul(0xff51_afd7_ed55_8ccd);
        ((h ^ (h >> 29)) as u32).max(1)
    }

    fn items(&self, salt: u64) -> Vec<u32> {
        self.tags.iter().map(|&t| Self::item(salt, t)).collect()
    }

    /// The records of the tags behind `r.items`.
    fn export_reconciled(&self, r: &Reconciled) -> Vec<u8> {
        let mut out = Vec::new();
        for &(origin, seq) in &self.tags {
            if !r.items.contains(&Self::item(r.salt, (origin, seq))) {
                continue;
            }
            out.extend_from_slice(&origin.0);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend((0..PAD).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
        }
        out
    }

    fn write(&mut self, n: u64) {
        for _ in 0..n {
            let seq = self.vector.get(&self.station) + 1;
            self.tags.insert((self.station, seq));
            self.vector.raise(self.station, seq);
        }
    }

    fn export(&self, peer: StationId, peer_vector: &VersionVector) -> Vec<u8> {
        let mut out = Vec::new();
        for &(origin, seq) in &self.tags {
            if origin == peer || peer_vector.get(&origin) >= seq {
                continue;
            }
            out.extend_from_slice(&origin.0);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend((0..PAD).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
        }
        out
    }

    fn import(&mut self, bytes: &[u8]) -> Result<VersionVector, String> {
        if let Some(reason) = &self.refuse {
            return Err(reason.clone());
        }
        if bytes.len() % RECORD != 0 {
            return Err(format!(
                "bundle of {} bytes is not whole records",
                bytes.len()
            ));
        }
        *self.imports.entry(BundleId::of(bytes)).or_default() += 1;
        for rec in bytes.chunks(RECORD) {
            let origin = StationId(rec[..16].try_into().unwrap());
            let seq = u64::from_le_bytes(rec[16..24].try_into().unwrap());
            // Skips what it has, like the real store.
            self.tags.insert((origin, seq));
            self.vector.raise(origin, seq);
        }
        Ok(self.vector.clone())
    }
}

/// What the shell persists outside the database, per peer (the real shell
/// keeps it in SQLite: `store/transfer.rs`). A chunk whose save the process
/// did not finish is simply not here, as a torn record is cut on load.
#[derive(Debug, Default, Clone)]
struct Disk {
    kept: BTreeMap<StationId, KeptOutgoing>,
    partial: BTreeMap<StationId, PartialIncoming>,
    /// The last session ended unverified.
    reconcile: bool,
}

impl Disk {
    fn state_for(&mut self, peer: StationId) -> PeerState {
        PeerState {
            outgoing: self.kept.get(&peer).cloned(),
            incoming: self.partial.get(&peer).cloned(),
            reconcile: self.reconcile,
            salt: 0x5a17,
            synced_before: false,
            auth: None,
            refuse_push: false,
        }
    }

    fn any_kept(&self) -> Option<KeptOutgoing> {
        self.kept.values().next().cloned()
    }

    fn any_partial(&self) -> Option<PartialIncoming> {
        self.partial.values().next().cloned()
    }
}

struct Station {
    store: FakeStore,
    disk: Disk,
    known: Vec<StationId>,
    session: Option<Session>,
    outcome: Option<Result<Summary, SessionError>>,
    heard_schema: Option<SchemaFingerprint>,
    callsign: String,
}

impl Station {
    fn new(b: u8) -> Self {
        Station {
            store: FakeStore::new(sid(b)),
            disk: Disk::default(),
            known: Vec::new(),
            session: None,
            outcome: None,
            heard_schema: None,
            callsign: format!("N0C{b}"),
        }
    }

    fn local(&self) -> LocalInfo {
        LocalInfo {
            station: self.store.station,
            callsign: self.callsign.clone(),
            schema: SchemaFingerprint(self.store.schema),
            dict_id: 0,
            vector: self.store.vector.clone(),
            fingerprint: self.store.fingerprint(),
        }
    }

    /// The shell's event loop, store and disk work done synchronously.
    fn pump_events(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        while let Some(ev) = s.poll_event() {
            match ev {
                SessionEvent::PeerHello {
                    station, schema, ..
                } => {
                    self.heard_schema = Some(schema);
                    if s.role() == Role::Initiator {
                        continue;
                    }
                    if self.known.contains(&station) {
                        s.accept_peer(self.disk.state_for(station)).unwrap();
                    } else {
                        s.refuse_peer().unwrap();
                    }
                }
                SessionEvent::NeedBundleFor {
                    peer,
                    peer_vector,
                    reconciled,
                    ..
                } => {
                    self.store.peer_vectors.insert(peer, peer_vector.clone());
                    let bytes = match reconciled {
                        Some(r) => self.store.export_reconciled(&r),
                        None => self.store.export(peer, &peer_vector),
                    };
                    s.bundle_ready(bytes).unwrap();
                }
                SessionEvent::NeedItems { salt } => {
                    s.items_ready(self.store.items(salt), self.store.vector.clone())
                        .unwrap();
                }
                SessionEvent::KeepOutgoing { peer, id, bytes } => {
                    self.disk.kept.insert(peer, KeptOutgoing { id, bytes });
                }
                SessionEvent::DropOutgoing { peer, id } => {
                    assert_eq!(self.disk.kept.remove(&peer).unwrap().id, id);
                }
                SessionEvent::BeginPartial {
                    peer,
                    id,
                    total_len,
                } => {
                    let bytes = Vec::new();
                    let partial = PartialIncoming {
                        id,
                        total_len,
                        bytes,
                        later: Vec::new(),
                    };
                    self.disk.partial.insert(peer, partial);
                }
                SessionEvent::SaveChunk {
                    peer,
                    id,
                    offset,
                    bytes,
                } => {
                    let p = self.disk.partial.get_mut(&peer).unwrap();
                    assert_eq!((p.id, p.bytes.len() as u64), (id, offset));
                    p.bytes.extend(bytes);
                    while p.later.first().is_some_and(|l| l.0 == p.bytes.len() as u64) {
                        let (_, piece) = p.later.remove(0);
                        p.bytes.extend(piece);
                    }
                }
                SessionEvent::DiscardPartial { peer, id } => {
                    if self.disk.partial.get(&peer).map(|p| p.id) == Some(id) {
                        self.disk.partial.remove(&peer);
                    }
                }
                SessionEvent::BundleArrived { bytes, .. } => match self.store.import(&bytes) {
                    Ok(v) => {
                        s.set_fingerprint(self.store.fingerprint());
                        s.bundle_committed(v).unwrap()
                    }
                    Err(reason) => s.bundle_refused(reason).unwrap(),
                },
                SessionEvent::PeerConfirmed { peer, vector } => {
                    self.store.peer_vectors.insert(peer, vector);
                }
                SessionEvent::Finished(summary) => self.outcome = Some(Ok(summary)),
                SessionEvent::Failed(e) => self.outcome = Some(Err(e)),
                SessionEvent::Authenticated { .. } => {}
            }
        }
    }
}

/// Where to cut the link: after `after` messages were delivered; `lose_events`:
/// the station that took the last one crashes before its shell saw the events.
#[derive(Clone, Copy, Debug)]
struct Cut {
    after: usize,
    lose_events: bool,
}

#[derive(Default, Debug)]
struct Tally {
    /// Every message delivered, with the index of the station that sent it.
    delivered: Vec<(usize, Message)>,
    /// Chunk payload bytes delivered, per bundle id.
    chunk_bytes: BTreeMap<BundleId, u64>,
    /// Chunk bytes delivered to a station that crashed before saving them.
    unsaved: u64,
    message_bytes: u64,
}

struct Net {
    st: [Station; 2],
    config: Config,
    tally: Tally,
    /// Bundle of the last BundleStart per direction (sender index).
    current: [Option<BundleId>; 2],
}

impl Net {
    fn new(a: Station, b: Station) -> Self {
        let mut net = Net {
            st: [a, b],
            // The bundle phases alone; reconciliation has its own tests below.
            config: Config {
                reconcile: false,
                ..Config::new(128)
            },
            tally: Tally::default(),
            current: [None, None],
        };
        let (ia, ib) = (net.st[0].store.station, net.st[1].store.station);
        net.st[0].known.push(ib);
        net.st[1].known.push(ia);
        net
    }

    /// One session, station 0 calling station 1; returns whether it was cut.
    fn session(&mut self, cut: Option<Cut>) -> bool {
        let peer = self.st[1].store.station;
        let state = self.st[0].disk.state_for(peer);
        let local = self.st[0].local();
        self.st[0].session =
            Some(Session::initiate(self.config.clone(), local, peer, state).unwrap());
        self.st[1].session =
            Some(Session::respond(self.config.clone(), self.st[1].local()).unwrap());
        for s in &mut self.st {
            s.outcome = None;
        }
        let mut pipes: [VecDeque<Vec<u8>>; 2] = [VecDeque::new(), VecDeque::new()];
        let mut delivered = 0;
        let mut turn = 0;
        loop {
            for i in 0..2 {
                self.st[i].pump_events();
                let s = self.st[i].session.as_mut().unwrap();
                // A refusal goes outside the ARQ in the daemon; here as a message.
                while let Some(m) = s.take_refusal().or_else(|| s.poll_transmit()) {
                    assert!(m.len() <= self.config.max_message);
                    pipes[1 - i].push_back(m);
                }
            }
            // Alternate directions; pipes[i] holds messages for station i.
            let to = if !pipes[turn].is_empty() {
                turn
            } else if !pipes[1 - turn].is_empty() {
                1 - turn
            } else {
                break;
            };
            turn = 1 - to;
            let bytes = pipes[to].pop_front().unwrap();
            let from = 1 - to;
            let msg = Message::parse(&bytes).unwrap();
            self.tally.message_bytes += bytes.len() as u64;
            match &msg {
                Message::BundleStart { id, .. } => self.current[from] = Some(*id),
                Message::Chunk { bytes, .. } => {
                    let id = self.current[from].unwrap();
                    *self.tally.chunk_bytes.entry(id).or_default() += bytes.len() as u64;
                }
                _ => {}
            }
            self.tally.delivered.push((from, msg.clone()));
            self.st[to].session.as_mut().unwrap().handle_message(&bytes);
            delivered += 1;
            if let Some(c) = cut.filter(|c| c.after == delivered) {
                if c.lose_events {
                    if let Message::Chunk { bytes, .. } = &msg {
                        self.tally.unsaved += bytes.len() as u64;
                    }
                    // The process died: its shell never saw these (a chunk
                    // it got half way through saving is cut on load).
                    let st = &mut self.st[to];
                    while st.session.as_mut().unwrap().poll_event().is_some() {}
                } else {
                    self.st[to].pump_events();
                }
                for s in &mut self.st {
                    s.session.as_mut().unwrap().link_lost();
                    s.pump_events();
                    s.session = None;
                }
                return true;
            }
        }
        false
    }

    fn converged(&self) -> bool {
        self.st[0].store.tags == self.st[1].store.tags
    }
}

fn pair(a_writes: u64, b_writes: u64) -> Net {
    let mut a = Station::new(0xa1);
    let mut b = Station::new(0xb2);
    a.store.write(a_writes);
    b.store.write(b_writes);
    Net::new(a, b)
}

fn kinds(t: &Tally) -> Vec<(usize, &'static str)> {
    let mut out: Vec<(usize, &'static str)> = Vec::new();
    for (from, m) in &t.delivered {
        // Runs of chunks collapse into one entry.
        if m.name() == "Chunk" && out.last() == Some(&(*from, "Chunk")) {
            continue;
        }
        out.push((*from, m.name()));
    }
    out
}

/// A station restored from a backup lost rows it wrote; its peer holds them but
/// never sends a station its own rows, so the logs see nothing to do. The
/// fingerprints at the end say the contents differ, at both ends.
#[test]
fn a_restored_station_is_not_verified() {
    let mut net = pair(5, 5);
    assert!(!net.session(None));
    assert!(net.converged());
    // B restored from before its last two writes.
    let b = net.st[1].store.station;
    net.st[1].store.tags.retain(|&(o, seq)| o != b || seq <= 3);
    net.st[1].store.vector.0.insert(b, 3);
    assert!(!net.session(None));
    assert!(!net.converged());
    for st in &net.st {
        let summary = st.outcome.clone().unwrap().unwrap();
        assert_eq!(summary.verified(), Some(false));
    }
}

#[test]
fn full_sync_both_ways() {
    let mut net = pair(30, 20);
    assert!(!net.session(None));
    assert!(net.converged());
    assert_eq!(net.st[0].store.tags.len(), 50);
    let (a, b) = (&net.st[0], &net.st[1]);
    let sa = a.outcome.clone().unwrap().unwrap();
    let sb = b.outcome.clone().unwrap().unwrap();
    // Both ends see the same content at the end, from the fingerprints alone.
    assert_eq!((sa.verified(), sb.verified()), (Some(true), Some(true)));
    assert_eq!(sa.local_fingerprint, a.store.fingerprint());
    // Pull first, then push, each acknowledged after the commit.
    assert_eq!(
        kinds(&net.tally),
        [
            (0, "Hello"),
            (1, "Hello"),
            (1, "BundleStart"),
            (1, "Chunk"),
            (0, "Applied"),
            (0, "BundleStart"),
            (0, "Chunk"),
            (1, "Applied"),
            (1, "Done"),
        ]
    );
    assert_eq!(sa.bundles_applied, 1);
    assert_eq!(sa.bundles_confirmed, 1);
    assert_eq!(sb.bundles_applied, 1);
    assert_eq!(sa.bundle_bytes_received, 20 * RECORD as u64);
    assert_eq!(sa.bundle_bytes_sent, 30 * RECORD as u64);
    // The responder's Finished comes before its last Applied and Done go out.
    let sb_end = b.session.as_ref().unwrap().summary();
    assert_eq!(sa.message_bytes_sent, sb.message_bytes_received);
    assert_eq!(sa.message_bytes_received, sb_end.message_bytes_sent);
    assert_eq!(
        sa.message_bytes_sent + sb_end.message_bytes_sent,
        net.tally.message_bytes
    );
    // Each side recorded what the other confirmed, and nothing is left over.
    assert_eq!(a.store.peer_vectors[&b.store.station], b.store.vector);
    assert_eq!(b.store.peer_vectors[&a.store.station], a.store.vector);
    assert!(a.disk.kept.is_empty() && a.disk.partial.is_empty());
    assert!(b.disk.kept.is_empty() && b.disk.partial.is_empty());
    // Every bundle byte crossed once.
    let total: u64 = net.tally.chunk_bytes.values().sum();
    assert_eq!(total, 50 * RECORD as u64);
    // A second session finds nothing to send either way.
    net.tally = Tally::default();
    assert!(!net.session(None));
    assert_eq!(
        kinds(&net.tally),
        [
            (0, "Hello"),
            (1, "Hello"),
            (1, "NoBundle"),
            (0, "NoBundle"),
            (1, "Done")
        ]
    );
}

#[test]
fn empty_pull_and_push_cost_two_hellos_and_eleven_bytes() {
    let mut net = pair(0, 0);
    assert!(!net.session(None));
    assert!(net.st[0].outcome.as_ref().unwrap().is_ok());
    assert!(net.st[1].outcome.as_ref().unwrap().is_ok());
    let hello_bytes: u64 = net
        .tally
        .delivered
        .iter()
        .filter(|(_, m)| m.name() == "Hello")
        .map(|(_, m)| m.buffer_len() as u64)
        .sum();
    // Two Hellos (callsigns of 6, empty vectors, 8-byte fingerprints), NoBundle,
    // NoBundle, and Done with the responder's fingerprint: verifying costs 16 bytes.
    assert_eq!(hello_bytes, 2 * (35 + 8));
    assert_eq!(net.tally.message_bytes, hello_bytes + 1 + 1 + 9);
}

#[test]
fn empty_pull_then_push() {
    let mut net = pair(5, 0);
    assert!(!net.session(None));
    assert!(net.converged());
    assert_eq!(
        kinds(&net.tally),
        [
            (0, "Hello"),
            (1, "Hello"),
            (1, "NoBundle"),
            (0, "BundleStart"),
            (0, "Chunk"),
            (1, "Applied"),
            (1, "Done")
        ]
    );
    let mut net = pair(0, 5);
    assert!(!net.session(None));
    assert!(net.converged());
    assert_eq!(
        kinds(&net.tally),
        [
            (0, "Hello"),
            (1, "Hello"),
            (1, "BundleStart"),
            (1, "Chunk"),
            (0, "Applied"),
            (0, "NoBundle"),
            (1, "Done")
        ]
    );
}

/// Index of the `n`th delivered chunk sent by station `from`, 1-based count.
fn nth_chunk(t: &Tally, from: usize, n: usize) -> usize {
    t.delivered
        .iter()
        .enumerate()
        .filter(|(_, (f, m))| *f == from && m.name() == "Chunk")
        .nth(n - 1)
        .map(|(i, _)| i + 1)
        .unwrap()
}

fn assert_each_bundle_crossed_once(net: &Net) {
    for (id, n) in &net.tally.chunk_bytes {
        let imports: u32 = net
            .st
            .iter()
            .map(|s| s.store.imports.get(id).copied().unwrap_or(0))
            .sum();
        assert_eq!(imports, 1, "bundle {id} imported {imports} times");
        let len = net
            .tally
            .delivered
            .iter()
            .find_map(|(_, m)| match m {
                Message::BundleStart {
                    id: i, total_len, ..
                } if i == id => Some(*total_len),
                _ => None,
            })
            .unwrap();
        assert_eq!(*n, len, "bundle {id}: {n} chunk bytes delivered for {len}");
    }
}

fn interrupted_resumes(from: usize, lose_events: bool) {
    // Learn where the 10th chunk of the direction under test falls.
    let mut probe = pair(40, 40);
    probe.session(None);
    let cut_at = nth_chunk(&probe.tally, from, 10);

    let mut net = pair(40, 40);
    assert!(net.session(Some(Cut {
        after: cut_at,
        lose_events
    })));
    let receiver = &net.st[1 - from];
    let sender = &net.st[from];
    assert!(matches!(
        receiver.outcome,
        Some(Err(SessionError::LinkLost))
    ));
    let partial = receiver.disk.any_partial().expect("partial kept");
    let kept = sender.disk.any_kept().expect("bundle kept");
    assert_eq!(partial.id, kept.id);
    let stored = partial.bytes.len() as u64;
    assert!(stored > 0 && stored < kept.bytes.len() as u64);
    assert_eq!(partial.bytes[..], kept.bytes[..stored as usize]);

    assert!(!net.session(None));
    assert!(net.converged());
    let resumed_from = net
        .tally
        .delivered
        .iter()
        .rev()
        .find_map(|(_, m)| match m {
            Message::BundleStart {
                id, offset, more, ..
            } if *id == kept.id => Some((*offset, *more)),
            _ => None,
        })
        .unwrap();
    assert_eq!(resumed_from, (stored, true));
    for s in &net.st {
        assert!(s.disk.kept.is_empty() && s.disk.partial.is_empty());
        assert!(s.outcome.as_ref().unwrap().is_ok());
    }
    let id = kept.id;
    let len = kept.bytes.len() as u64;
    let imports: u32 = net
        .st
        .iter()
        .map(|s| s.store.imports.get(&id).copied().unwrap_or(0))
        .sum();
    assert_eq!(imports, 1);
    // Counted over both sessions: each byte that was stored crossed once;
    // only a chunk taken by a process that crashed before saving it crossed twice.
    assert_eq!(net.tally.chunk_bytes[&id], len + net.tally.unsaved);
    if lose_events {
        assert!(net.tally.unsaved > 0);
    }
}

#[test]
fn interrupted_pull_resumes_from_the_stored_offset() {
    interrupted_resumes(1, false);
}

#[test]
fn interrupted_push_resumes_from_the_stored_offset() {
    interrupted_resumes(0, false);
}

#[test]
fn receiver_crash_before_saving_resends_only_the_unsaved_chunk() {
    interrupted_resumes(1, true);
    interrupted_resumes(0, true);
}

#[test]
fn restarted_sender_resumes_kept_bytes_then_sends_what_is_new() {
    let mut probe = pair(0, 40);
    probe.session(None);
    let cut_at = nth_chunk(&probe.tally, 1, 7);
    let mut net = pair(0, 40);
    assert!(net.session(Some(Cut {
        after: cut_at,
        lose_events: false
    })));
    let kept = net.st[1].disk.any_kept().unwrap();
    // While the link was down the responder's application wrote more rows.
    net.st[1].store.write(3);
    assert!(!net.session(None));
    assert!(net.converged());
    assert_eq!(net.st[0].store.tags.len(), 43);
    // The kept bundle went on from the stored offset, a fresh one carried the rest.
    let starts: Vec<(BundleId, u64, u64, bool)> = net
        .tally
        .delivered
        .iter()
        .filter_map(|(_, m)| match m {
            Message::BundleStart {
                id,
                total_len,
                offset,
                more,
            } => Some((*id, *total_len, *offset, *more)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[0].0, kept.id);
    assert_eq!((starts[1].0, starts[1].3), (kept.id, true));
    assert!(starts[1].2 > 0);
    assert_eq!(
        (starts[2].1, starts[2].2, starts[2].3),
        (3 * RECORD as u64, 0, false)
    );
    assert_each_bundle_crossed_once(&net);
    assert_eq!(
        net.st[0]
            .outcome
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .bundles_applied,
        2
    );
}

#[test]
fn a_resume_sends_only_the_bytes_not_held() {
    let mut probe = pair(0, 40);
    probe.session(None);
    let cut_at = nth_chunk(&probe.tally, 1, 3);
    let mut net = pair(0, 40);
    assert!(net.session(Some(Cut {
        after: cut_at,
        lose_events: false
    })));
    let kept = net.st[1].disk.any_kept().unwrap();
    let len = kept.bytes.len();
    let before = net.tally.chunk_bytes[&kept.id];
    // The receiver also holds two pieces further on (heard in a broadcast);
    // the second runs to the end.
    let p = net.st[0].disk.partial.values_mut().next().unwrap();
    let stored = p.bytes.len();
    assert!(len > stored + 1500, "{len} {stored}");
    let pieces = [(stored + 100, 300), (stored + 1000, len - stored - 1000)];
    p.later = pieces
        .iter()
        .map(|&(o, n)| (o as u64, kept.bytes[o..o + n].to_vec()))
        .collect();
    assert!(!net.session(None));
    assert!(net.converged());
    let sent = net.tally.chunk_bytes[&kept.id] - before;
    assert_eq!(sent, (100 + 600) as u64);
    assert_imported_once(&net, kept.id);
}

/// The bundle was imported once.
fn assert_imported_once(net: &Net, id: BundleId) {
    let imports: u32 = net
        .st
        .iter()
        .map(|s| s.store.imports.get(&id).copied().unwrap_or(0))
        .sum();
    assert_eq!(imports, 1);
}

#[test]
fn applied_lost_after_commit_is_not_applied_again() {
    let mut probe = pair(0, 10);
    probe.session(None);
    // Cut right after the initiator's Applied reached... nobody: cut when
    // the last pull chunk is delivered, after the initiator committed.
    let last_chunk = probe
        .tally
        .delivered
        .iter()
        .rposition(|(f, m)| *f == 1 && m.name() == "Chunk")
        .unwrap()
        + 1;
    let mut net = pair(0, 10);
    assert!(net.session(Some(Cut {
        after: last_chunk,
        lose_events: false
    })));
    assert_eq!(net.st[0].store.tags.len(), 10);
    assert!(net.st[0].disk.partial.is_empty());
    assert!(!net.st[1].disk.kept.is_empty());
    assert!(!net.session(None));
    // The responder learns from the Hello that nothing is missing.
    let after: Vec<&str> = net.tally.delivered[last_chunk..]
        .iter()
        .map(|(_, m)| m.name())
        .collect();
    assert_eq!(after, ["Hello", "Hello", "NoBundle", "NoBundle", "Done"]);
    assert!(net.st[1].disk.kept.is_empty());
    assert_each_bundle_crossed_once(&net);
}

#[test]
fn random_cuts_and_crashes_converge_without_resending_stored_bytes() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let (mut resumes, mut crashes) = (0, 0);
    for round in 0..40 {
        let mut net = pair(rng.gen_range(0..60), rng.gen_range(0..60));
        let mut sessions = 0;
        loop {
            sessions += 1;
            assert!(sessions < 60, "round {round} did not finish");
            let cut = rng.gen_bool(0.7).then(|| Cut {
                after: rng.gen_range(1..40),
                lose_events: rng.gen_bool(0.5),
            });
            // Writes between sessions, as the stations keep working.
            if rng.gen_bool(0.3) {
                net.st[rng.gen_range(0..2)].store.write(rng.gen_range(1..4));
            }
            crashes += usize::from(cut.is_some_and(|c| c.lose_events));
            if !net.session(cut) {
                break;
            }
        }
        resumes += net
            .tally
            .delivered
            .iter()
            .filter(|(_, m)| matches!(m, Message::BundleStart { offset, .. } if *offset > 0))
            .count();
        assert!(net.converged(), "round {round}");
        assert!(net.st.iter().all(|s| s.outcome.as_ref().unwrap().is_ok()));
        for s in &net.st {
            let summary = s.outcome.clone().unwrap().unwrap();
            assert_eq!(summary.verified(), Some(true), "round {round}");
        }
        for (id, n) in &net.tally.chunk_bytes {
            let imports: u32 = net
                .st
                .iter()
                .map(|s| s.store.imports.get(id).copied().unwrap_or(0))
                .sum();
            assert!(
                imports <= 1,
                "round {round}: bundle {id} imported {imports} times"
            );
            let len = net
                .tally
                .delivered
                .iter()
                .find_map(|(_, m)| match m {
                    Message::BundleStart {
                        id: i, total_len, ..
                    } if i == id => Some(*total_len),
                    _ => None,
                })
                .unwrap();
            assert!(
                *n <= len + net.tally.unsaved,
                "round {round}: {n} bytes for {len}"
            );
        }
    }
    // The seed exercises what the test is about.
    assert!(
        resumes >= 20 && crashes >= 20,
        "{resumes} resumes, {crashes} crashes"
    );
}

#[test]
fn commit_landing_after_link_loss_still_clears_the_partial() {
    let net = pair(0, 3);
    let cfg = net.config.clone();
    let mut a = Session::initiate(
        cfg.clone(),
        net.st[0].local(),
        sid(0xb2),
        PeerState::default(),
    )
    .unwrap();
    let mut b = Session::respond(cfg, net.st[1].local()).unwrap();
    b.handle_message(&a.poll_transmit().unwrap());
    b.poll_event();
    b.accept_peer(PeerState::default()).unwrap();
    b.poll_event();
    b.bundle_ready(net.st[1].store.export(sid(0xa1), &VersionVector::default()))
        .unwrap();
    while let Some(m) = b.poll_transmit() {
        a.handle_message(&m);
    }
    let arrived = std::iter::from_fn(|| a.poll_event())
        .find_map(|e| match e {
            SessionEvent::BundleArrived { id, .. } => Some(id),
            _ => None,
        })
        .unwrap();
    a.link_lost();
    assert_eq!(
        a.poll_event(),
        Some(SessionEvent::Failed(SessionError::LinkLost))
    );
    a.bundle_committed(VersionVector::default()).unwrap();
    assert_eq!(
        a.poll_event(),
        Some(SessionEvent::DiscardPartial {
            peer: sid(0xb2),
            id: arrived
        })
    );
    // Failed for good: the error stays, nothing is sent after the link is gone.
    assert_eq!(a.error(), Some(&SessionError::LinkLost));
    assert!(a.poll_transmit().is_none());
}

#[test]
fn differing_schemas_still_sync_and_the_shell_hears_the_peers() {
    let mut net = pair(3, 3);
    net.st[1].store.schema = 0x1234_5678;
    net.session(None);
    assert!(net.converged());
    assert!(net.st[0].outcome.as_ref().is_some_and(|o| o.is_ok()));
    assert!(net.st[1].outcome.as_ref().is_some_and(|o| o.is_ok()));
    assert_eq!(net.st[0].heard_schema, Some(SchemaFingerprint(0x1234_5678)));
    assert_eq!(net.st[1].heard_schema, Some(SchemaFingerprint(0xfeed_f00d)));
}

#[test]
fn unknown_station_is_refused() {
    let mut net = pair(3, 3);
    net.st[1].known.clear();
    assert!(!net.session(None));
    assert_eq!(
        net.st[1].outcome,
        Some(Err(SessionError::UnknownStation { station: sid(0xa1) }))
    );
    assert!(matches!(
        &net.st[0].outcome,
        Some(Err(SessionError::PeerError {
            code: ErrorCode::UnknownStation,
            ..
        }))
    ));
    assert_eq!(kinds(&net.tally), [(0, "Hello"), (1, "Error")]);
}

#[test]
fn wrong_station_answering_is_refused() {
    let mut net = pair(1, 1);
    let mut session = Session::initiate(
        net.config.clone(),
        net.st[0].local(),
        sid(0xcc),
        PeerState::default(),
    )
    .unwrap();
    let hello = session.poll_transmit().unwrap();
    let mut responder = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    responder.handle_message(&hello);
    assert!(matches!(
        responder.poll_event(),
        Some(SessionEvent::PeerHello { .. })
    ));
    responder.accept_peer(PeerState::default()).unwrap();
    session.handle_message(&responder.poll_transmit().unwrap());
    assert_eq!(
        session.error(),
        Some(&SessionError::WrongStation {
            expected: sid(0xcc),
            got: sid(0xb2)
        })
    );
    match Message::parse(&session.poll_transmit().unwrap()).unwrap() {
        Message::Error { code, .. } => assert_eq!(code, ErrorCode::WrongStation),
        other => panic!("{other:?}"),
    }
    net.st[0].session = None;
}

#[test]
fn refused_bundle_fails_both_sides_with_the_reason() {
    let mut net = pair(4, 0);
    net.st[1].store.refuse = Some("bundle addressed to another station".into());
    assert!(!net.session(None));
    assert_eq!(
        net.st[1].outcome,
        Some(Err(SessionError::BundleRefused(
            "bundle addressed to another station".into()
        )))
    );
    assert_eq!(
        net.st[0].outcome,
        Some(Err(SessionError::PeerError {
            code: ErrorCode::BundleRefused,
            text: "bundle addressed to another station".into()
        }))
    );
    // The receiver drops the useless partial; the sender keeps its unconfirmed bundle.
    assert!(net.st[1].disk.partial.is_empty());
    assert_eq!(net.st[0].disk.kept.len(), 1);
    assert_eq!(net.st[1].store.tags.len(), 0);
}

#[test]
fn version_mismatch_is_refused() {
    let net = pair(0, 0);
    let mut responder = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    let mut hello = Session::initiate(
        net.config.clone(),
        net.st[0].local(),
        sid(0xb2),
        PeerState::default(),
    )
    .unwrap()
    .poll_transmit()
    .unwrap();
    hello[1] = 9;
    responder.handle_message(&hello);
    assert_eq!(
        responder.error(),
        Some(&SessionError::Version {
            ours: PROTOCOL_VERSION,
            theirs: 9
        })
    );
}

#[test]
fn corrupted_bundle_is_caught_by_its_id() {
    let net = pair(0, 3);
    let cfg = net.config.clone();
    let mut a = Session::initiate(
        cfg.clone(),
        net.st[0].local(),
        sid(0xb2),
        PeerState::default(),
    )
    .unwrap();
    let mut b = Session::respond(cfg, net.st[1].local()).unwrap();
    b.handle_message(&a.poll_transmit().unwrap());
    b.poll_event();
    b.accept_peer(PeerState::default()).unwrap();
    match b.poll_event() {
        Some(SessionEvent::NeedBundleFor { .. }) => {}
        other => panic!("{other:?}"),
    }
    b.bundle_ready(net.st[1].store.export(sid(0xa1), &VersionVector::default()))
        .unwrap();
    while let Some(mut m) = b.poll_transmit() {
        if m[0] == super::message::TYPE_CHUNK {
            let last = m.len() - 1;
            m[last] ^= 0x40;
        }
        a.handle_message(&m);
    }
    let events: Vec<SessionEvent> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(matches!(
        events.last(),
        Some(SessionEvent::Failed(SessionError::BundleCorrupt { .. }))
    ));
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::DiscardPartial { .. })));
    assert!(!events
        .iter()
        .any(|e| matches!(e, SessionEvent::BundleArrived { .. })));
}

#[test]
fn protocol_violations_fail_with_a_reason() {
    let net = pair(0, 0);
    let cfg = net.config.clone();
    // A chunk before any hello.
    let mut b = Session::respond(cfg.clone(), net.st[1].local()).unwrap();
    b.handle_message(
        &Message::Chunk {
            offset: 0,
            bytes: vec![1],
        }
        .to_bytes(),
    );
    assert!(matches!(
        b.error(),
        Some(SessionError::Protocol(Violation::Unexpected {
            message: "Chunk",
            ..
        }))
    ));
    match Message::parse(&b.take_refusal().or_else(|| b.poll_transmit()).unwrap()).unwrap() {
        Message::Error { code, .. } => assert_eq!(code, ErrorCode::Protocol),
        other => panic!("{other:?}"),
    }
    // Garbage bytes.
    let mut b = Session::respond(cfg.clone(), net.st[1].local()).unwrap();
    b.handle_message(&[0x02, 0x00, 0x01]);
    assert!(matches!(b.error(), Some(SessionError::Malformed(_))));
    // An unknown message type.
    let mut b = Session::respond(cfg.clone(), net.st[1].local()).unwrap();
    b.handle_message(&[0x55]);
    assert!(matches!(
        b.error(),
        Some(SessionError::Protocol(Violation::Unexpected { .. }))
    ));
    // Once failed, the error stays and further input changes nothing.
    b.handle_message(&[0x07]);
    assert!(matches!(b.error(), Some(SessionError::Protocol(_))));
    // Shell calls out of turn are refused, not obeyed; after the end they
    // are no-ops (a commit may land after the link was lost).
    assert!(b.bundle_ready(vec![1]).is_ok());
    let mut fresh = Session::respond(cfg.clone(), net.st[1].local()).unwrap();
    assert!(fresh.bundle_ready(vec![1]).is_err());
    assert!(fresh.bundle_committed(VersionVector::default()).is_err());
    assert!(fresh.bundle_refused("x").is_err());
    assert!(fresh.accept_peer(PeerState::default()).is_err());
    assert!(fresh.poll_transmit().is_none() && fresh.poll_event().is_none());
    // A resume offset the receiver never reported.
    let a = resumed_at_50(&net, PeerState::default());
    assert!(matches!(
        a.error(),
        Some(SessionError::Protocol(Violation::ResumeMismatch {
            offset: 50,
            ..
        }))
    ));
    // A stored partial the sender's resume does not fit (another length,
    // from a forged broadcast piece) is discarded: the next session starts
    // afresh instead of failing the same way for ever.
    let stored = PartialIncoming {
        id: BundleId(1),
        total_len: 107,
        bytes: vec![0; 50],
        later: Vec::new(),
    };
    let state = PeerState {
        incoming: Some(stored),
        ..PeerState::default()
    };
    let mut a = resumed_at_50(&net, state);
    assert!(a.error().is_some());
    let mut discarded = false;
    while let Some(e) = a.poll_event() {
        discarded |= matches!(
            e,
            SessionEvent::DiscardPartial {
                id: BundleId(1),
                ..
            }
        );
    }
    assert!(discarded);
}

/// An initiator holding `state` whose peer, after the Hellos, starts bundle 1
/// (100 bytes) at offset 50.
fn resumed_at_50(net: &Net, state: PeerState) -> Session {
    let cfg = net.config.clone();
    let mut a = Session::initiate(cfg.clone(), net.st[0].local(), sid(0xb2), state).unwrap();
    let mut r = Session::respond(cfg, net.st[1].local()).unwrap();
    r.handle_message(&a.poll_transmit().unwrap());
    r.poll_event();
    r.accept_peer(PeerState::default()).unwrap();
    a.handle_message(&r.poll_transmit().unwrap());
    a.handle_message(
        &Message::BundleStart {
            id: BundleId(1),
            total_len: 100,
            offset: 50,
            more: true,
        }
        .to_bytes(),
    );
    a
}

#[test]
fn oversized_bundle_offer_is_refused() {
    let net = pair(0, 0);
    let mut cfg = net.config.clone();
    cfg.max_bundle = 1000;
    let mut a = Session::initiate(
        cfg.clone(),
        net.st[0].local(),
        sid(0xb2),
        PeerState::default(),
    )
    .unwrap();
    let mut r = Session::respond(cfg, net.st[1].local()).unwrap();
    r.handle_message(&a.poll_transmit().unwrap());
    r.poll_event();
    r.accept_peer(PeerState::default()).unwrap();
    a.handle_message(&r.poll_transmit().unwrap());
    a.handle_message(
        &Message::BundleStart {
            id: BundleId(1),
            total_len: 1001,
            offset: 0,
            more: false,
        }
        .to_bytes(),
    );
    assert_eq!(
        a.error(),
        Some(&SessionError::BundleTooLarge {
            len: 1001,
            max: 1000
        })
    );
}

#[test]
fn long_vectors_travel_in_fragments() {
    let mut net = pair(12, 9);
    // Thirty stations the two have heard of: Hellos and Applieds of ~600 bytes.
    for st in &mut net.st {
        for b in 0..30 {
            st.store.vector.raise(sid(0x10 + b), 1000 + u64::from(b));
        }
    }
    net.config = Config {
        reconcile: false,
        ..Config::new(64)
    };
    assert!(!net.session(None));
    assert!(net.converged());
    assert!(net.st.iter().all(|s| s.outcome.as_ref().unwrap().is_ok()));
    let frags = net
        .tally
        .delivered
        .iter()
        .filter(|(_, m)| m.name() == "Fragment")
        .count();
    // Two Hellos and two Applieds of ~600 bytes, 63 bytes a piece.
    assert!(frags >= 4 * 9, "{frags} fragments");
    assert_eq!(net.st[0].store.vector, net.st[1].store.vector);
    assert_eq!(
        net.st[0].store.peer_vectors[&sid(0xb2)],
        net.st[1].store.vector
    );
    // Only a message beyond the reassembly limit is refused.
    let mut a = Station::new(1);
    for b in 0..4000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&b.to_le_bytes());
        a.store.vector.raise(StationId(id), 5);
    }
    let s = Session::initiate(Config::new(64), a.local(), sid(2), PeerState::default()).unwrap();
    assert!(matches!(
        s.error(),
        Some(SessionError::MessageTooLarge { .. })
    ));
    assert!(Session::respond(Config::new(8), a.local()).is_err());
}

#[test]
fn bad_fragment_sequences_are_protocol_violations() {
    let net = pair(0, 0);
    let frag = |last, bytes: &[u8]| {
        Message::Fragment {
            last,
            bytes: bytes.to_vec(),
        }
        .to_bytes()
    };
    // A whole message between fragments.
    let mut b = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    b.handle_message(&frag(false, &[0x01, 0x01]));
    b.handle_message(&[0x07]);
    assert!(matches!(
        b.error(),
        Some(SessionError::Protocol(Violation::MessageInFragments))
    ));
    // A fragment wrapping a fragment.
    let mut b = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    b.handle_message(&frag(true, &frag(true, &[0x07])));
    assert!(matches!(
        b.error(),
        Some(SessionError::Protocol(Violation::NestedFragment))
    ));
    // Fragments that add up to garbage.
    let mut b = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    b.handle_message(&frag(false, &[0x02]));
    b.handle_message(&frag(true, &[0x00, 0x01]));
    assert!(matches!(b.error(), Some(SessionError::Malformed(_))));
    // Endless fragments stop at the reassembly limit.
    let mut b = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    for _ in 0..(super::message::MAX_REASSEMBLY / 100 + 1) {
        b.handle_message(&frag(false, &[0x55; 100]));
    }
    assert!(matches!(
        b.error(),
        Some(SessionError::Protocol(Violation::FragmentsTooLong { .. }))
    ));
}

#[test]
fn progress_reports_bytes_done() {
    let net = pair(0, 10);
    let cfg = net.config.clone();
    let mut a = Session::initiate(
        cfg.clone(),
        net.st[0].local(),
        sid(0xb2),
        PeerState::default(),
    )
    .unwrap();
    let mut b = Session::respond(cfg, net.st[1].local()).unwrap();
    b.handle_message(&a.poll_transmit().unwrap());
    b.poll_event();
    b.accept_peer(PeerState::default()).unwrap();
    b.poll_event();
    let bytes = net.st[1].store.export(sid(0xa1), &VersionVector::default());
    let total = bytes.len() as u64;
    b.bundle_ready(bytes).unwrap();
    for _ in 0..3 {
        a.handle_message(&b.poll_transmit().unwrap()); // Hello, BundleStart, first chunk
    }
    let first = 128 - 1 - 1;
    assert_eq!(b.progress().sending, Some((first, total)));
    assert_eq!(a.progress().receiving, Some((first, total)));
}

/// Stations set up apart from copies of the same data (here 200 changes of a
/// third station, C): neither holds a change of the other, so the responder
/// reconciles and only the rows that differ travel.
fn copies(shared: u64, a_writes: u64, b_writes: u64) -> Net {
    let c = sid(0xc3);
    let mut net = pair(a_writes, b_writes);
    for st in &mut net.st {
        for seq in 1..=shared {
            st.store.tags.insert((c, seq));
        }
        st.store.vector.raise(c, shared);
    }
    net.config.reconcile = true;
    // Room for a 64-sum sketch in one message.
    net.config.max_message = 600;
    net
}

#[test]
fn first_contact_reconciles_and_sends_only_the_differences() {
    let mut net = copies(200, 5, 3);
    assert!(!net.session(None));
    assert!(net.converged());
    let sa = net.st[0].outcome.clone().unwrap().unwrap();
    let sb = net.st[1].outcome.clone().unwrap().unwrap();
    assert_eq!((sa.verified(), sb.verified()), (Some(true), Some(true)));
    assert_eq!(sa.differences, Some(8));
    assert_eq!(sb.differences, Some(3), "the responder sends its own 3");
    assert_eq!(sa.bundle_bytes_received, 3 * RECORD as u64);
    assert_eq!(sa.bundle_bytes_sent, 5 * RECORD as u64);
    assert_eq!(
        kinds(&net.tally),
        [
            (0, "Hello"),
            (1, "Hello"),
            (1, "Sketch"),
            (0, "Differences"),
            (1, "BundleStart"),
            (1, "Chunk"),
            (0, "Applied"),
            (0, "BundleStart"),
            (0, "Chunk"),
            (1, "Applied"),
            (1, "Done"),
        ]
    );
}

#[test]
fn a_sketch_too_small_is_extended_until_it_decodes() {
    // 64 sums first (200 items / 16, at least 64); 90 differences need more.
    let mut net = copies(200, 50, 40);
    assert!(!net.session(None));
    assert!(net.converged());
    let sa = net.st[0].outcome.clone().unwrap().unwrap();
    assert_eq!(sa.differences, Some(90));
    assert_eq!(sa.sketch_sums, 128, "64 sent, then 64 more");
    let names: Vec<_> = kinds(&net.tally).into_iter().map(|k| k.1).collect();
    assert_eq!(
        names[2..6],
        ["Sketch", "SketchMore", "Sketch", "Differences"]
    );
}

#[test]
fn sets_too_different_to_reconcile_sync_by_the_logs() {
    // Nothing shared: the difference is every row, and the initiator gives up
    // (SketchMore 0) rather than pay for a sketch as large as the data.
    let mut net = pair(300, 300);
    net.config.reconcile = true;
    assert!(!net.session(None));
    assert!(net.converged());
    let sa = net.st[0].outcome.clone().unwrap().unwrap();
    assert_eq!(sa.differences, None);
    assert_eq!(sa.bundle_bytes_received, 300 * RECORD as u64);
    assert!(net
        .tally
        .delivered
        .iter()
        .any(|(_, m)| *m == Message::SketchMore { capacity: 0 }));
}

/// The drift case: stations that synced before differ behind their logs (here
/// B was restored from a backup). The session that finds it ends unverified;
/// the next one reconciles and repairs it.
#[test]
fn an_unverified_pair_reconciles_next_time_and_verifies() {
    let mut net = pair(5, 5);
    net.config.reconcile = true;
    assert!(!net.session(None));
    let b = net.st[1].store.station;
    net.st[1].store.tags.retain(|&(o, seq)| o != b || seq <= 3);
    net.st[1].store.vector.0.insert(b, 3);
    // B writes again after the restore: its seqs 4 and 5 now name new rows.
    assert!(!net.session(None));
    assert!(!net.converged());
    net.st[1].disk.reconcile = true;
    assert!(!net.session(None));
    assert!(net.converged(), "A sent back B's lost rows");
    let sa = net.st[0].outcome.clone().unwrap().unwrap();
    assert_eq!(sa.verified(), Some(true));
    assert_eq!(sa.differences, Some(2));
}

#[test]
fn a_sketch_request_that_shrinks_is_a_protocol_violation() {
    let mut net = copies(100, 2, 2);
    let peer = net.st[1].store.station;
    let mut a = Session::initiate(
        net.config.clone(),
        net.st[0].local(),
        peer,
        PeerState::default(),
    )
    .unwrap();
    let mut b = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    b.handle_message(&a.poll_transmit().unwrap());
    net.st[1].session = Some(b);
    net.st[1].pump_events();
    let b = net.st[1].session.as_mut().unwrap();
    while b.poll_transmit().is_some() {}
    b.handle_message(&Message::SketchMore { capacity: 3 }.to_bytes());
    assert!(matches!(
        b.error(),
        Some(SessionError::Protocol(Violation::SketchCapacity {
            capacity: 3,
            ..
        }))
    ));
    drop(a.poll_transmit());
}

#[test]
fn a_second_sketch_in_one_session_is_a_protocol_violation() {
    let mut net = copies(100, 2, 2);
    let peer = net.st[1].store.station;
    let a = Session::initiate(
        net.config.clone(),
        net.st[0].local(),
        peer,
        PeerState::default(),
    )
    .unwrap();
    let b = Session::respond(net.config.clone(), net.st[1].local()).unwrap();
    net.st[0].session = Some(a);
    net.st[1].session = Some(b);
    let hello_a = net.st[0].session.as_mut().unwrap().poll_transmit().unwrap();
    net.st[1].session.as_mut().unwrap().handle_message(&hello_a);
    net.st[1].pump_events();
    let from_b: Vec<Vec<u8>> =
        std::iter::from_fn(|| net.st[1].session.as_mut().unwrap().poll_transmit()).collect();
    let sketch = from_b
        .iter()
        .find(|m| matches!(Message::parse(m), Ok(Message::Sketch { .. })))
        .unwrap()
        .clone();
    for m in &from_b {
        net.st[0].session.as_mut().unwrap().handle_message(m);
        net.st[0].pump_events();
    }
    let a = net.st[0].session.as_mut().unwrap();
    assert!(a.error().is_none());
    a.handle_message(&sketch);
    assert!(matches!(
        a.error(),
        Some(SessionError::Protocol(Violation::Unexpected {
            message: "Sketch",
            ..
        }))
    ));
}
