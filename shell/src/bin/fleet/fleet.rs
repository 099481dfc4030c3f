//! The fleet: devices, and the imperfections real trackers add to their reports.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::device::{Area, Device};
use super::rng::Rng;

/// How often each imperfection happens, per report.
#[derive(Debug, Clone, Copy)]
pub struct Imperfections {
    /// The same record sent twice (an ACK lost between tracker and gateway).
    pub duplicate: f64,
    /// A record buffered on the device and uploaded later, out of order.
    pub late: f64,
    /// A (0, 0) placeholder position.
    pub null_island: f64,
    /// No satellites in view.
    pub no_fix: f64,
}

pub struct Fleet {
    rng: Rng,
    area: Area,
    devices: Vec<Device>,
    /// (next fix time, device index), soonest first.
    due: BinaryHeap<Reverse<(i64, usize)>>,
    imperfections: Imperfections,
    /// Records held back to be uploaded late, with how many reports later.
    late: VecDeque<(u64, String)>,
    emitted: u64,
}

/// Device `i`'s id: the same numbering as the Node.js baseline, so both serve one fleet.
pub fn device_id(i: usize) -> String {
    (356_307_040_000_000u64 + i as u64).to_string()
}

impl Fleet {
    pub fn new(
        seed: u64,
        devices: usize,
        area: Area,
        start_ts: i64,
        interval_ms: i64,
        imperfections: Imperfections,
    ) -> Fleet {
        let mut rng = Rng::new(seed);
        let devices: Vec<Device> = (0..devices)
            .map(|i| Device::new(device_id(i), area, start_ts, interval_ms, &mut rng))
            .collect();
        let due = devices
            .iter()
            .enumerate()
            .map(|(i, d)| Reverse((d.next_ts, i)))
            .collect();
        Fleet {
            rng,
            area,
            devices,
            due,
            imperfections,
            late: VecDeque::new(),
            emitted: 0,
        }
    }

    /// The next payloads in fix-time order across devices (one report, plus whatever the
    /// imperfections add).
    pub fn next(&mut self, out: &mut Vec<String>) {
        self.emitted += 1;
        while let Some((due, _)) = self.late.front() {
            if *due > self.emitted {
                break;
            }
            if let Some((_, payload)) = self.late.pop_front() {
                out.push(payload);
            }
        }
        let Some(Reverse((_, i))) = self.due.pop() else {
            return;
        };
        let mut fix = self.devices[i].step(self.area, &mut self.rng);
        self.due.push(Reverse((self.devices[i].next_ts, i)));
        let imp = self.imperfections;
        if self.rng.chance(imp.null_island) {
            fix.lat = 0.0;
            fix.lon = 0.0;
        }
        if self.rng.chance(imp.no_fix) {
            fix.satellites = 0;
        }
        let payload = fix.payload(&mut self.rng);
        if self.rng.chance(imp.late) {
            let delay = 5 * self.devices.len() as u64
                + self.rng.next_u64() % (30 * self.devices.len() as u64 + 1);
            self.late.push_back((self.emitted + delay, payload));
            return;
        }
        if self.rng.chance(imp.duplicate) {
            out.push(payload.clone());
        }
        out.push(payload);
    }

    /// Fix time of the next report.
    pub fn next_due(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }

    pub fn devices(&self) -> usize {
        self.devices.len()
    }
}
