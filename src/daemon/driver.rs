//! The daemon's policy, pure: when to call peers (`run --every`), when one
//! `sync` calls again (rows still to be sent in full, a link lost mid-way),
//! the time limit, the budget, and the grace a cancel gets. Its timers are
//! data (`Timer`, quinn-proto style); the tokio loop (`drive`) only moves
//! bytes, calls `step` and sleeps until `poll_timeout`. Tested on virtual time.

use std::time::{Duration, Instant};

use super::station::{Outcome, Station};
use super::{DaemonError, End, Mode, Observer, MAX_RESUMES, MAX_ROUNDS};

/// After a cancel, how long the peers get to hear it before the loop returns.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The driver's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// `run --every`: the next round of calls.
    Round = 0,
    /// `sync --timeout`: give up.
    Deadline = 1,
    /// After a cancel: stop waiting for the peers to hear it.
    CancelGrace = 2,
    /// The next progress report to the observer.
    Progress = 3,
}

const TIMERS: usize = 4;

/// Queues a note for the observer's next `step` (`start` has no observer).
fn obs_note_later(d: &mut Driver, note: String) {
    d.notes.push(note);
}

/// The daemon's policy over one station (see the module doc).
pub struct Driver {
    mode: Mode,
    start: Instant,
    tick: Duration,
    timers: [Option<Instant>; TIMERS],
    our_session: Option<u16>,
    outcomes: Vec<Outcome>,
    resumes: usize,
    cancelled: bool,
    timed_out: bool,
    shutdown_seen: bool,
    /// `run --every`: a round's calls are due (after its broadcast).
    round_calls: bool,
    /// The peer our sessions are with now (`Sync`, `Broadcast`).
    current: Option<String>,
    /// Notes made before the first `step`.
    notes: Vec<String>,
    /// `Broadcast`: peers still to sync with after the current one.
    queue: std::collections::VecDeque<String>,
    /// Every peer done so far ended with nothing left on either side.
    complete: bool,
}

impl Driver {
    /// Starts `mode` at `now`: a `Sync` calls its peer at once; `Run` with
    /// `every` calls every peer at once and then on schedule.
    pub fn start(
        mode: Mode,
        timeout: Option<Duration>,
        tick: Duration,
        now: Instant,
        station: &mut Station,
    ) -> Result<Driver, DaemonError> {
        let mut d = Driver {
            mode,
            start: now,
            tick,
            timers: [None; TIMERS],
            our_session: None,
            outcomes: Vec::new(),
            resumes: 0,
            cancelled: false,
            timed_out: false,
            shutdown_seen: false,
            round_calls: false,
            current: None,
            notes: Vec::new(),
            queue: Default::default(),
            complete: true,
        };
        d.set(Timer::Deadline, timeout.map(|t| now + t));
        d.set(Timer::Progress, Some(now));
        match &d.mode {
            Mode::Sync { peer, budget } => {
                let end = budget.map(|b| now + b);
                d.current = Some(peer.clone());
                d.our_session = Some(station.start_sync_within(now, peer, rand::random(), end)?);
            }
            Mode::Broadcast { peers } => {
                d.queue = peers.iter().cloned().collect();
                let cast = station.start_cast(now, peers)?;
                for (name, why) in &cast.left_out {
                    obs_note_later(&mut d, format!("{name} left out of the broadcast: {why}"));
                }
                if cast.rows == 0 {
                    obs_note_later(&mut d, "nothing to broadcast: syncing with each".into());
                }
            }
            Mode::Run { every: Some(_), .. } => d.set(Timer::Round, Some(now)),
            Mode::Run { every: None, .. } => {}
        }
        Ok(d)
    }

    /// `run --broadcast`: what two or more idle peers with a key lack goes
    /// out once, before the round's calls.
    fn round_cast(
        &mut self,
        now: Instant,
        station: &mut Station,
        obs: &mut dyn Observer,
    ) -> Result<(), DaemonError> {
        let lacking = station.peers_lacking()?;
        if lacking.len() < 2 {
            return Ok(());
        }
        match station.start_cast(now, &lacking) {
            Ok(cast) => {
                for (name, why) in &cast.left_out {
                    obs.note(&format!("{name} left out of the broadcast: {why}"));
                }
            }
            Err(e) => obs.note(&format!("broadcast: {e}")),
        }
        Ok(())
    }

    /// `Broadcast`: once its pieces are on their way and no session of ours
    /// runs, call the next peer.
    fn next_peer(&mut self, now: Instant, station: &mut Station) -> Result<(), DaemonError> {
        if self.our_session.is_some() || self.cancelled || station.casting(now) {
            return Ok(());
        }
        while let Some(peer) = self.queue.pop_front() {
            self.resumes = 0;
            match station.start_sync(now, &peer, rand::random()) {
                Ok(id) => {
                    self.our_session = Some(id);
                    self.current = Some(peer);
                    break;
                }
                // One peer that cannot be called (calling us right now, say)
                // does not stop the others.
                Err(e) => {
                    self.complete = false;
                    self.notes.push(format!("cannot call {peer}: {e}"));
                }
            }
        }
        Ok(())
    }

    fn set(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    fn due(&self, t: Timer, now: Instant) -> bool {
        self.timers[t as usize].is_some_and(|at| now >= at)
    }

    /// When `step` must run next at the latest.
    pub fn poll_timeout(&self, station: &Station) -> Option<Instant> {
        self.timers
            .iter()
            .flatten()
            .copied()
            .chain(station.poll_timeout())
            .min()
    }

    /// The operator asked to stop: every session is cancelled, the peers get
    /// `CANCEL_GRACE` to hear it.
    pub fn shutdown(&mut self, now: Instant, station: &mut Station, obs: &mut dyn Observer) {
        if self.shutdown_seen {
            return;
        }
        self.shutdown_seen = true;
        obs.note("stopping: telling peers");
        self.cancel(now, station);
    }

    fn cancel(&mut self, now: Instant, station: &mut Station) {
        station.cancel_all(now);
        self.cancelled = true;
        self.round_calls = false;
        self.set(Timer::CancelGrace, Some(now + CANCEL_GRACE));
        self.set(Timer::Round, None);
        self.set(Timer::Deadline, None);
    }

    /// Everything due at `now`: the station's timers, a round of calls, the
    /// time limit, the notes and outcomes (a `sync` may call again), the end
    /// of a cancel's grace, progress. `Some(end)`: the loop is over.
    pub fn step(
        &mut self,
        now: Instant,
        station: &mut Station,
        obs: &mut dyn Observer,
    ) -> Result<Option<End>, DaemonError> {
        if station.poll_timeout().is_some_and(|t| t <= now) {
            station.handle_timeout(now);
        }
        if let (
            true,
            &Mode::Run {
                every: Some(every),
                broadcast,
            },
        ) = (self.due(Timer::Round, now), &self.mode)
        {
            self.set(Timer::Round, Some(now + every));
            // Not while the last round's broadcast or calls are still to go:
            // a broadcast longer than the round would queue again for ever.
            if broadcast && !station.casting(now) && !self.round_calls {
                self.round_cast(now, station, obs)?;
            }
            self.round_calls = true;
        }
        // A round's calls wait for its broadcast to be off the air.
        if self.round_calls && !self.cancelled && !station.casting(now) {
            self.round_calls = false;
            for p in station.store().peers()? {
                if !station.busy_with(&p.name) {
                    if let Err(e) = station.start_sync(now, &p.name, rand::random()) {
                        obs.note(&format!("cannot call {}: {e}", p.name));
                    }
                }
            }
        }
        if self.due(Timer::Deadline, now) {
            self.timed_out = true;
            self.cancel(now, station);
        }
        for n in self.notes.drain(..) {
            obs.note(&n);
        }
        while let Some(n) = station.poll_note() {
            obs.note(&n);
        }
        while let Some(o) = station.poll_outcome() {
            obs.outcome(&o);
            if self.our_session != Some(o.session) {
                continue;
            }
            if self.shutdown_seen {
                return Ok(Some(End::Shutdown));
            }
            if self.timed_out {
                return Ok(Some(End::TimedOut));
            }
            if let Some(end) = self.after_outcome(now, o, station, obs)? {
                return Ok(Some(end));
            }
        }
        if matches!(self.mode, Mode::Broadcast { .. }) {
            self.next_peer(now, station)?;
            for n in self.notes.drain(..) {
                obs.note(&n);
            }
            let idle = self.our_session.is_none() && !station.casting(now);
            if idle && self.queue.is_empty() && !self.cancelled {
                return Ok(Some(End::Synced {
                    outcomes: std::mem::take(&mut self.outcomes),
                    complete: self.complete,
                }));
            }
        }
        if self.cancelled && (!station.has_sessions() || self.due(Timer::CancelGrace, now)) {
            return Ok(Some(if self.shutdown_seen || !self.timed_out {
                End::Shutdown
            } else {
                End::TimedOut
            }));
        }
        if self.due(Timer::Progress, now) {
            if station.has_sessions() {
                obs.progress(&station.sessions());
            }
            self.set(Timer::Progress, Some(now + self.tick));
        }
        Ok(None)
    }

    /// Our `sync` session ended: call again, or the sync is over.
    fn after_outcome(
        &mut self,
        now: Instant,
        o: Outcome,
        station: &mut Station,
        obs: &mut dyn Observer,
    ) -> Result<Option<End>, DaemonError> {
        let budget = match &self.mode {
            Mode::Sync { budget, .. } => *budget,
            Mode::Broadcast { .. } => None,
            Mode::Run { .. } => return Ok(None),
        };
        let Some(peer) = self.current.clone() else {
            return Ok(None);
        };
        let peer = &peer;
        let budget_end = budget.map(|b| self.start + b);
        let budget_spent = o.left_for_budget > 0;
        let ok = o.result.is_ok();
        // A link lost after the peer was heard (its process restarted, the
        // channel went away for a while): call again, resuming.
        let lost = matches!(o.result, Err(crate::sync::SessionError::LinkLost))
            && o.stats.frames_received > 0;
        self.outcomes.push(o);
        // Per peer: a broadcast syncs with several in turn.
        let rounds = self
            .outcomes
            .iter()
            .filter(|o| o.result.is_ok() && o.peer.as_deref() == Some(peer.as_str()))
            .count();
        let more = ok && station.needs_another_round(peer)?;
        let again = !budget_spent
            && ((more && rounds < MAX_ROUNDS) || (lost && self.resumes < MAX_RESUMES));
        if again && !self.cancelled {
            if lost {
                self.resumes += 1;
                obs.note(&format!("calling {peer} again to resume"));
            } else {
                obs.note(&format!(
                    "rows remain to be sent in full: another session with {peer}"
                ));
            }
            match station.start_sync_within(now, peer, rand::random(), budget_end) {
                Ok(id) => {
                    self.our_session = Some(id);
                    return Ok(None);
                }
                // A broadcast goes on with the next peer (this one may be
                // calling us right now).
                Err(e) if matches!(self.mode, Mode::Broadcast { .. }) => {
                    obs.note(&format!("cannot call {peer} again: {e}"));
                    self.complete = false;
                    self.our_session = None;
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.complete &= ok && !more;
        self.our_session = None;
        if matches!(self.mode, Mode::Broadcast { .. }) {
            // `step` calls the next peer, or ends.
            return Ok(None);
        }
        Ok(Some(End::Synced {
            outcomes: std::mem::take(&mut self.outcomes),
            complete: self.complete,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::SessionView;
    use crate::profile::Profile;
    use crate::sim::pair::SimPair;
    use crate::sim::Side;
    use crate::store::Store;
    use crate::testkit::{cloned_pair, insert_posts, sim_pair, update_people};

    /// Keeps the notes.
    #[derive(Default)]
    struct Notes(Vec<String>);
    impl Observer for Notes {
        fn note(&mut self, n: &str) {
            self.0.push(n.to_string());
        }
        fn progress(&mut self, _: &[SessionView]) {}
        fn outcome(&mut self, _: &Outcome) {}
    }

    /// Runs `driver` over station A of `pair` on virtual time until it ends or
    /// `limit` passes; returns the end and when.
    fn drive(
        pair: &mut SimPair,
        driver: &mut Driver,
        limit: Duration,
        notes: &mut Notes,
    ) -> (Option<End>, Duration) {
        loop {
            pair.run_until(limit, |_| true);
            let now = pair.link.now();
            let a = pair.station(Side::A).unwrap();
            if let Some(end) = driver.step(now, a, notes).unwrap() {
                return (Some(end), pair.link.elapsed());
            }
            let ours = driver
                .poll_timeout(pair.station(Side::A).unwrap())
                .map(|t| pair.link.since_start(t));
            let next = pair
                .next_event()
                .into_iter()
                .chain(ours.filter(|&t| t > pair.link.elapsed()))
                .min();
            match next {
                Some(t) if t <= limit => pair.link.advance_to(t),
                _ => return (None, pair.link.elapsed()),
            }
        }
    }

    fn pair_with_work(dir: &std::path::Path, posts: usize) -> SimPair {
        let (a, b) = cloned_pair(dir, false);
        insert_posts(&a, 3, posts, 200);
        update_people(&a, 3, 10);
        sim_pair(
            &Profile::load("sim-kiss-1200").unwrap(),
            &a,
            &b,
            0.0,
            0.0,
            5,
        )
    }

    fn sync_b(budget: Option<Duration>) -> Mode {
        Mode::Sync {
            peer: "B".into(),
            budget,
        }
    }

    /// Drives to the end (an hour of virtual time at most), notes dropped.
    fn drive_to_end(pair: &mut SimPair, d: &mut Driver) -> (Option<End>, Duration) {
        drive(pair, d, Duration::from_secs(3600), &mut Notes::default())
    }

    fn start(pair: &mut SimPair, mode: Mode, timeout: Option<Duration>) -> Driver {
        let now = pair.link.now();
        let a = pair.station(Side::A).unwrap();
        Driver::start(mode, timeout, Duration::from_secs(1), now, a).unwrap()
    }

    #[test]
    fn a_sync_ends_with_its_outcome_and_everything_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = pair_with_work(dir.path(), 20);
        let mode = sync_b(None);
        let mut d = start(&mut pair, mode, None);
        match drive_to_end(&mut pair, &mut d) {
            (Some(End::Synced { outcomes, complete }), _) => {
                assert!(complete);
                assert_eq!(outcomes.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_budget_spent_ends_the_sync_without_another_session() {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = pair_with_work(dir.path(), 300);
        let mode = sync_b(Some(Duration::from_secs(60)));
        let mut d = start(&mut pair, mode, None);
        match drive_to_end(&mut pair, &mut d) {
            (Some(End::Synced { outcomes, complete }), t) => {
                assert!(!complete);
                assert_eq!(outcomes.len(), 1, "no second session");
                assert!(outcomes[0].left_for_budget > 0);
                assert!(t < Duration::from_secs(75), "{t:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_time_limit_cancels_and_ends_by_the_end_of_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = pair_with_work(dir.path(), 300);
        let mode = sync_b(None);
        let mut d = start(&mut pair, mode, Some(Duration::from_secs(20)));
        let (end, t) = drive_to_end(&mut pair, &mut d);
        assert!(matches!(end, Some(End::TimedOut)), "{end:?}");
        // Not before the limit; at the latest when the cancel's grace runs out
        // (at 1200 bit/s the peer's long turn can outlast it).
        assert!(
            t >= Duration::from_secs(20) && t <= Duration::from_secs(20) + CANCEL_GRACE,
            "{t:?}"
        );
    }

    #[test]
    fn a_broadcast_goes_out_then_each_peer_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = pair_with_work(dir.path(), 40);
        let mode = Mode::Broadcast {
            peers: vec!["B".into()],
        };
        let mut d = start(&mut pair, mode, None);
        let mut notes = Notes::default();
        match drive(&mut pair, &mut d, Duration::from_secs(3600), &mut notes) {
            (Some(End::Synced { outcomes, complete }), _) => {
                assert!(complete);
                assert_eq!(outcomes.len(), 1);
                // B heard the whole broadcast: its sync had nothing left to carry.
                let s = outcomes[0].result.as_ref().unwrap();
                assert_eq!(s.bundle_bytes_sent, 0, "{:?}", notes.0);
                assert_eq!(s.verified(), Some(true));
            }
            other => panic!("{other:?} {:?}", notes.0),
        }
        assert!(
            notes.0.iter().any(|n| n.starts_with("broadcast ")),
            "{:?}",
            notes.0
        );
    }

    #[test]
    fn run_every_calls_each_peer_on_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = pair_with_work(dir.path(), 2);
        let mode = Mode::Run {
            every: Some(Duration::from_secs(60)),
            broadcast: false,
        };
        let mut d = start(&mut pair, mode, None);
        let mut notes = Notes::default();
        let (end, t) = drive(&mut pair, &mut d, Duration::from_secs(150), &mut notes);
        assert!(end.is_none() && t == Duration::from_secs(150));
        // Calls at 0, 60 and 120 s, each finished before the next.
        let calls = notes.0.iter().filter(|n| n.ends_with("calling B")).count();
        let done = notes
            .0
            .iter()
            .filter(|n| n.contains("finished with B"))
            .count();
        assert_eq!((calls, done), (3, 3), "{:?}", notes.0);
        let a = Store::open(dir.path().join("a.sqlite")).unwrap();
        let ib = Store::open(dir.path().join("b.sqlite"))
            .unwrap()
            .station()
            .id;
        assert_eq!(a.pending_for(&ib).unwrap(), 0);
    }
}
