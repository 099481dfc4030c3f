//! History in snapshots (contract section 5.1): which positions form a trail, and what a
//! resume (`since`) sends.
//!
//! A snapshot is built from what Postgres returned (any order, any number per device) and
//! the live path's recent track of each device ([`RecentTracks`]), which holds what was
//! accepted live and may not be stored yet; on a tie in `ts` the stored row wins. Every
//! device's sequence then passes the live path's per-device rules (`ts` increasing, the
//! jump rule, judged from the first fix of the window), so that a trail or a resumed track
//! never shows a fix the live path would not have sent.
//!
//! Which history is read is the subscription's [`HistoryQuery`]; the shell answers it from
//! Postgres (bounded reads), and the decisions stay here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::ordering::{Fix, JumpRule, Tracker, Verdict};
use super::recent::RecentTracks;
use crate::wire::{SnapshotPosition, WirePosition};
use crate::UnixMillis;

/// What a [`Command::LoadSnapshot`](super::Command::LoadSnapshot) reads, besides the newest
/// non-faulty stored position of each device (always read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Nothing more.
    Latest,
    /// Per device, its non-faulty stored positions with `ts` in the `window_ms` before its
    /// newest one; when there are more than `max_rows_per_device`, those [`thin`] keeps
    /// of them for that many.
    Trail {
        window_ms: u64,
        max_rows_per_device: usize,
    },
    /// Every non-faulty stored position with `ts > since` of the devices, in (device, ts)
    /// order, stopping after `max_rows` (reading one more than the snapshot may hold tells
    /// the core that there are too many).
    Since { since: UnixMillis, max_rows: usize },
}

/// How many stored rows per device a trail reads at most, for `max_points` trail points:
/// the shell reads the very sample [`thin`] would keep of the stored window, so that a
/// trail costs the same whatever the devices' rate. The per-device rules then judge that
/// sample; a fix they drop leaves the trail a point shorter rather than making it read
/// more.
pub(crate) fn trail_rows_per_device(max_points: usize) -> usize {
    max_points
}

/// At most `max` of `points`, spread evenly over them, the first (oldest) always kept, in
/// their order. With no more than `max`, all of them.
pub fn thin<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    thin_indices(points.len(), max)
        .map(|i| points[i].clone())
        .collect()
}

/// The indices [`thin`] keeps of `n` points for at most `max`, increasing.
pub(crate) fn thin_indices(n: usize, max: usize) -> impl Iterator<Item = usize> {
    let kept = n.min(max);
    // With n > max, index k*n/max for k in 0..max: strictly increasing, the first is 0;
    // otherwise every index.
    (0..kept).map(move |k| {
        if n <= max {
            k
        } else {
            (k as u128 * n as u128 / max as u128) as usize
        }
    })
}

/// Keeps the fixes (sorted by `ts`) the live path's per-device rules accept, judged from
/// the first.
pub(crate) fn ruled(fixes: impl IntoIterator<Item = Fix>, rule: JumpRule) -> Vec<Fix> {
    let mut tracker = Tracker::new(rule);
    fixes
        .into_iter()
        .filter(|fix| {
            matches!(
                tracker.judge_fix("", *fix),
                Verdict::Accepted | Verdict::Reanchored
            )
        })
        .collect()
}

/// What a snapshot holds, and the per-device floors below which no live position may follow
/// it.
#[derive(Debug)]
pub(crate) struct Built {
    pub positions: Vec<SnapshotPosition>,
    pub floors: BTreeMap<Arc<str>, UnixMillis>,
    pub truncated: bool,
}

/// The inputs of [`build`] besides the rows.
pub(crate) struct Known<'a> {
    /// The devices of the event now.
    pub devices: BTreeSet<&'a str>,
    pub recent: &'a RecentTracks,
    pub rule: JumpRule,
    pub trail_max_points: usize,
    pub resume_max_positions: usize,
    /// Positions arrived while the snapshot loaded were more than could be held: a resume
    /// cannot be complete.
    pub overflowed: bool,
}

/// The snapshot of `query` from the stored `rows` and what the live path knows.
pub(crate) fn build(known: &Known<'_>, query: HistoryQuery, rows: Vec<WirePosition>) -> Built {
    // A trail's rows are a thinned sample: recent fixes older than the newest stored one
    // were left out on purpose. A resume's rows are complete, and a recent fix older than
    // the newest stored one may still be on its way (inserts run concurrently).
    let all_recent = matches!(query, HistoryQuery::Since { .. });
    // The reads stop one row past `max_rows` of the rows after `since`: then some are
    // missing, even if the rules would leave fewer than the maximum of those read.
    let cut = match query {
        HistoryQuery::Since { since, max_rows } => {
            let after: BTreeSet<(&str, i64)> = rows
                .iter()
                .filter(|r| r.ts > since.as_i64())
                .map(|r| (r.device_id.as_str(), r.ts))
                .collect();
            after.len() > max_rows
        }
        _ => false,
    };
    let tracks = merge(known, rows, all_recent);
    match query {
        HistoryQuery::Latest => latest(&tracks, false),
        HistoryQuery::Trail { window_ms, .. } => trails(known, &tracks, window_ms),
        HistoryQuery::Since { .. } if cut => latest(&tracks, true),
        HistoryQuery::Since { since, .. } => resume(known, &tracks, since),
    }
}

/// Per device of the event, its fixes in increasing `ts`, one per `ts`.
type Tracks<'a> = BTreeMap<&'a str, Vec<Fix>>;

/// Per device of the event, its fixes by `ts`: stored rows, then the recent live fixes at
/// times Postgres did not have (with `all_recent` false, only those newer than the newest
/// stored one).
fn merge<'a>(known: &Known<'a>, rows: Vec<WirePosition>, all_recent: bool) -> Tracks<'a> {
    // Rows come grouped by device (each statement reads a device at a time, and the track
    // store answers a device at once): one look-up per run of a device, not per row, as a
    // trail of 1,000 devices is 100,000 rows.
    let mut runs: Vec<(&'a str, Vec<Fix>)> = Vec::new();
    for row in rows {
        let fix = Fix {
            ts: UnixMillis(row.ts),
            lat: row.lat,
            lon: row.lon,
            speed: row.speed,
            course: row.course,
        };
        match runs.last_mut() {
            Some((device, fixes)) if *device == row.device_id.as_str() => fixes.push(fix),
            _ => {
                if let Some(&device) = known.devices.get(row.device_id.as_str()) {
                    runs.push((device, vec![fix]));
                }
            }
        }
    }
    let mut tracks: Tracks<'a> = BTreeMap::new();
    for (device, fixes) in runs {
        tracks.entry(device).or_default().extend(fixes);
    }
    for track in tracks.values_mut() {
        sort_unique(track);
    }
    for &device in &known.devices {
        let mut recent = known.recent.track(device).peekable();
        if recent.peek().is_none() {
            continue;
        }
        let track = tracks.entry(device).or_default();
        let stored = track.last().map(|f| f.ts);
        let before = track.len();
        track.extend(recent.filter(|fix| all_recent || stored.is_none_or(|s| fix.ts > s)));
        if track.len() > before {
            // Stable: on a tie in `ts` the stored row, which came first, is kept.
            sort_unique(track);
        }
    }
    tracks
}

/// Sorts by `ts`, keeping the first of equal times.
fn sort_unique(track: &mut Vec<Fix>) {
    track.sort_by_key(|f| f.ts);
    track.dedup_by_key(|f| f.ts);
}

/// The fixes of `track` with `from <= ts < to`.
fn between(track: &[Fix], from: i64, to: i64) -> &[Fix] {
    let lo = track.partition_point(|f| f.ts.as_i64() < from);
    let hi = track.partition_point(|f| f.ts.as_i64() < to).max(lo);
    &track[lo..hi]
}

/// The newest fix per device.
fn latest(tracks: &Tracks<'_>, truncated: bool) -> Built {
    let mut built = Built {
        positions: Vec::with_capacity(tracks.len()),
        floors: BTreeMap::new(),
        truncated,
    };
    for (&device, track) in tracks {
        if let Some(fix) = track.last() {
            built.positions.push(fix.to_wire(device).into());
            built.floors.insert(Arc::from(device), fix.ts);
        }
    }
    built
}

/// The newest fix per device, each with the fixes of the `window_ms` before it that pass
/// the rules, thinned.
fn trails(known: &Known<'_>, tracks: &Tracks<'_>, window_ms: u64) -> Built {
    let mut built = latest(tracks, false);
    for position in &mut built.positions {
        let head = &position.position;
        let start = head
            .ts
            .saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let window = tracks
            .get(head.device_id.as_str())
            .map(|t| between(t, start, head.ts).to_vec())
            .unwrap_or_default();
        let points: Vec<_> = ruled(window, known.rule)
            .into_iter()
            .map(|f| (f.ts.as_i64(), f.lat, f.lon))
            .collect();
        position.trail = Some(thin(&points, known.trail_max_points));
    }
    built
}

/// Every fix after `since` per device that passes the rules, in `ts` order; or, with more
/// than the resume may hold, the newest per device and `truncated`.
fn resume(known: &Known<'_>, tracks: &Tracks<'_>, since: UnixMillis) -> Built {
    let after = since.as_i64().saturating_add(1);
    let mut per_device = Vec::with_capacity(tracks.len());
    let mut total = 0usize;
    for (&device, track) in tracks {
        let fixes = ruled(between(track, after, i64::MAX).iter().copied(), known.rule);
        total = total.saturating_add(fixes.len());
        if total > known.resume_max_positions {
            return latest(tracks, true);
        }
        per_device.push((device, fixes));
    }
    if known.overflowed {
        return latest(tracks, true);
    }
    let mut built = Built {
        positions: Vec::with_capacity(total),
        floors: BTreeMap::new(),
        truncated: false,
    };
    // Nothing at or before `since` may follow: the client has it (or never will).
    for &device in &known.devices {
        built.floors.insert(Arc::from(device), since);
    }
    for (device, fixes) in per_device {
        if let Some(last) = fixes.last() {
            built.floors.insert(Arc::from(device), last.ts);
        }
        built
            .positions
            .extend(fixes.into_iter().map(|f| f.to_wire(device).into()));
    }
    built
}
