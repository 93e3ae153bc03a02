//! The store work a sync session asks for, done on the station's database:
//! exports, imports, and the transfers kept for resume (`rs_transfer`).

use crate::delta::StationId;
use crate::engine::Engine;
use crate::store::{LogEntry, Store, StoreError};
use crate::sync::{LocalInfo, SessionEvent, WrongState};

/// Why the shell could not do a session's store work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreWorkError {
    /// The store failed; the session was told (`local_failure`) and fails.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An answer the session did not expect: a bug in the shell.
    #[error("session: {0}")]
    WrongState(#[from] WrongState),
}

/// How this station presents itself in a Hello, read from its store.
///
/// The Hello carries the *uncapped* vector: the peer uses it only to export
/// (it is never recorded as a confirmation), and rows this station could not
/// apply travel as explicit wants in its bundles, which the peer's export
/// sends in full. With the capped vector the peer would resend every change
/// of that origin after the first want (measured: 26 kB again for 3 rows).
///
/// The fingerprint is over the tables shared with `peer` when it is known (an
/// initiator); a responder sets it when the caller's Hello names it.
pub fn local_info(store: &Store, peer: Option<&StationId>) -> Result<LocalInfo, StoreError> {
    let st = store.station();
    Ok(LocalInfo {
        station: st.id,
        callsign: st.callsign.unwrap_or_default(),
        schema: store.schema_fingerprint(),
        dict_id: store.dictionary()?.map(|d| d.id).unwrap_or(0),
        vector: store.raw_vector()?,
        fingerprint: match peer {
            Some(p) => store.fingerprint_for(p)?,
            None => store.content_fingerprint()?,
        },
    })
}

/// Stations that synced before differ behind their change logs: say where.
fn log_drift(
    store: &Store,
    peer: &StationId,
    rows: &std::collections::BTreeSet<(u16, String)>,
) -> Result<(), StoreError> {
    let mut per_table: std::collections::BTreeMap<&str, u64> = Default::default();
    for (t, _) in rows {
        if let Some(info) = store.tables().get(*t as usize) {
            *per_table.entry(info.name.as_str()).or_default() += 1;
        }
    }
    let tables: Vec<String> = per_table.iter().map(|(t, n)| format!("{t} {n}")).collect();
    store.log_event(&LogEntry {
        peer: Some(peer_name(store, peer)),
        direction: "local".into(),
        result: "warning".into(),
        message: format!(
            "drift: reconciliation found {} row(s) here that the peer holds otherwise or not at              all, though the change logs said it had them ({}): change capture missed writes,              or a station was restored from a backup",
            rows.len(),
            tables.join(", ")
        ),
        ..Default::default()
    })
}

fn peer_name(store: &Store, peer: &StationId) -> String {
    match store.peer_by_id(peer) {
        Ok(Some(p)) => p.name,
        _ => peer.to_string(),
    }
}

/// What a budget (`sync --budget`) allows the next bundle, and what it left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BundleLimit {
    /// Largest bundle the rest of the budget carries; `None`: no budget.
    pub max_bytes: Option<u64>,
    /// Rows the budget left for a later session.
    pub left_for_budget: u64,
}

/// Does what `event` asks of the store and answers the session. A store
/// failure is reported to the session as a local failure (what was stored
/// stays, so a later session resumes) and returned for the log.
pub fn do_store_work(
    store: &mut Store,
    engine: &mut Engine,
    event: SessionEvent,
    limit: &mut BundleLimit,
) -> Result<(), StoreWorkError> {
    match work(store, engine, event, limit) {
        Err(StoreWorkError::Store(e)) => {
            engine.session_mut().local_failure(e.to_string());
            Err(StoreWorkError::Store(e))
        }
        other => other,
    }
}

fn work(
    store: &mut Store,
    engine: &mut Engine,
    event: SessionEvent,
    limit: &mut BundleLimit,
) -> Result<(), StoreWorkError> {
    let responder = engine.session().role() == crate::sync::Role::Responder;
    match event {
        SessionEvent::PeerHello {
            station, schema, ..
        } => {
            // Capture checks itself before every sync: a table rebuilt or
            // migrated since the last one is noticed before we export.
            store.check_capture()?;
            engine
                .session_mut()
                .set_fingerprint(store.fingerprint_for(&station)?);
            store.note_peer_schema(&station, schema)?;
            if responder {
                if store.peer_by_id(&station)?.is_some() {
                    let mut state = store.transfer_state(&station)?;
                    state.auth = store.peer_auth(&station)?;
                    engine.session_mut().accept_peer(state)?;
                } else {
                    engine.session_mut().refuse_peer()?;
                }
            }
        }
        SessionEvent::NeedBundleFor {
            peer,
            peer_vector,
            peer_dict_id,
            reconciled,
            below,
        } => {
            store.set_peer_dict(&peer, peer_dict_id)?;
            let reconciling = reconciled.is_some();
            let mut next = None;
            let ex = match reconciled {
                Some(r) => {
                    let rows = store.recon_rows(&peer, r.salt, &r.items)?;
                    if r.with_log && !rows.is_empty() {
                        log_drift(store, &peer, &rows)?;
                    }
                    let holds = r.with_log.then_some(&peer_vector);
                    store.export_reconciled(&peer, &rows, &r.claim, holds)?
                }
                None => {
                    let c =
                        store.export_class_against(&peer, &peer_vector, below, limit.max_bytes)?;
                    next = c.next;
                    limit.left_for_budget += c.left_for_budget;
                    if c.left_for_budget > 0 {
                        store.log_event(&LogEntry {
                            peer: Some(peer_name(store, &peer)),
                            direction: "out".into(),
                            result: "ok".into(),
                            message: format!(
                                "budget: {} row(s) left for the next sync ({} row(s) fit)",
                                c.left_for_budget, c.exported.rows
                            ),
                            ..Default::default()
                        })?;
                    }
                    c.exported
                }
            };
            // A bundle with no rows and no wants says nothing the Hello did not;
            // after reconciliation it still carries its claim.
            let bytes = if ex.rows == 0 && ex.wants == 0 && !reconciling {
                Vec::new()
            } else {
                ex.bytes
            };
            engine.session_mut().bundle_ready_then(bytes, next)?;
        }
        SessionEvent::Authenticated { peer, nonce } => store.note_peer_hello_nonce(&peer, nonce)?,
        SessionEvent::KeepOutgoing { peer, id, bytes } => {
            store.transfer_keep_outgoing(&peer, id, &bytes)?
        }
        SessionEvent::DropOutgoing { peer, id } => store.transfer_drop_outgoing(&peer, id)?,
        SessionEvent::BeginPartial {
            peer,
            id,
            total_len,
        } => store.transfer_begin_partial(&peer, id, total_len)?,
        SessionEvent::SaveChunk {
            peer,
            id,
            offset,
            bytes,
        } => store.transfer_save_chunk(&peer, id, offset, &bytes)?,
        SessionEvent::DiscardPartial { peer, id } => store.transfer_discard_partial(&peer, id)?,
        SessionEvent::NeedItems { salt } => {
            let Some(peer) = engine.session().peer() else {
                // Items are asked for only after the peer's Hello.
                return Err(StoreWorkError::WrongState(WrongState {
                    call: "NeedItems",
                    state: "before the peer's Hello",
                }));
            };
            let items = store
                .recon_items(&peer, salt)?
                .into_iter()
                .map(|i| i.item)
                .collect();
            let vector = store.raw_vector()?;
            engine.session_mut().items_ready(items, vector)?;
        }
        SessionEvent::BundleArrived {
            peer,
            bytes,
            reconciled,
            ..
        } => {
            let imported = if reconciled {
                store.import_reconciled(&bytes, &peer)
            } else {
                store.import_transfer(&bytes, &peer)
            };
            match imported {
                Ok(_) => {
                    // Rows the import could not digest exactly are digested now.
                    store.check_capture()?;
                    engine
                        .session_mut()
                        .set_fingerprint(store.fingerprint_for(&peer)?);
                    // Uncapped, like the Hello: a peer that kept more to send
                    // exports against it, and our wants reach it in our bundles.
                    let v = store.raw_vector()?;
                    engine.session_mut().bundle_committed(v)?;
                }
                Err(e) if e.is_bundle_fault() => {
                    engine.session_mut().bundle_refused(e.to_string())?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        SessionEvent::PeerConfirmed { peer, vector } => {
            store.transfer_outgoing_applied(&peer)?;
            store.note_peer_vector(&peer, &vector)?
        }
        SessionEvent::Finished(s) => {
            let peer = s.peer.map(|p| peer_name(store, &p));
            // A session that left rows to go (wants, a capped bundle) explains its
            // own difference: it is no evidence of drift, and no reason to reconcile.
            let complete = match s.peer {
                Some(p) => store.wanted_from(&p)? == 0 && store.pending_for(&p)? == 0,
                None => true,
            };
            let verdict = match s.verified() {
                Some(false) if !complete => {
                    "; not verified yet: rows are still to go (next session)".to_string()
                }
                Some(true) => "; verified: both stations hold the same content".to_string(),
                Some(false) => format!(
                    "; NOT verified: the stations' contents differ (fingerprints {:016x} here, \
                     {:016x} there)",
                    s.local_fingerprint,
                    s.peer_fingerprint.unwrap_or(0)
                ),
                None => "; not verified: the peer sent no fingerprint".to_string(),
            };
            let recon = match s.differences {
                Some(n) => format!("; reconciled ({n} differing row version(s))"),
                None => String::new(),
            };
            store.log_event(&LogEntry {
                peer,
                direction: "local".into(),
                result: if s.verified() == Some(false) && complete {
                    "warning".into()
                } else {
                    "ok".into()
                },
                message: format!(
                    "radio sync finished: {} bundle(s) applied, {} confirmed by the peer, \
                     {} bundle bytes sent, {} received{recon}{verdict}",
                    s.bundles_applied,
                    s.bundles_confirmed,
                    s.bundle_bytes_sent,
                    s.bundle_bytes_received
                ),
                ..Default::default()
            })?;
            if let (Some(p), Some(v)) = (s.peer, s.verified()) {
                if v || complete {
                    store.note_verification(&p, v)?;
                }
                if v {
                    store.note_verified_holds(&p, &s.local_vector)?;
                }
            }
        }
        // A caller that was not accepted is logged by the station, aggregated.
        SessionEvent::Failed(_) if !engine.session().was_accepted() => {}
        SessionEvent::Failed(err) => {
            let peer = engine.session().peer().map(|p| peer_name(store, &p));
            store.log_event(&LogEntry {
                peer,
                direction: "local".into(),
                result: "error".into(),
                message: format!("radio sync failed: {err}"),
                ..Default::default()
            })?;
        }
    }
    Ok(())
}
