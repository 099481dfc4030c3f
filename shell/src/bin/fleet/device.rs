//! One simulated tracker moving along a wandering route inside the event's area.

use super::rng::Rng;

const METRES_PER_DEGREE: f64 = 111_320.0;

/// The area devices move in: a circle around a centre (Vilnius by default).
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

pub struct Device {
    pub id: String,
    lat: f64,
    lon: f64,
    heading: f64,
    speed_kmh: f64,
    altitude: f64,
    odometer_m: f64,
    pub next_ts: i64,
    pub interval_ms: i64,
}

/// One fix, before imperfections.
pub struct Fix {
    pub device_id: String,
    pub ts: i64,
    pub lat: f64,
    pub lon: f64,
    pub altitude: f64,
    pub angle: f64,
    pub speed: f64,
    pub satellites: u8,
    pub odometer_m: u64,
}

impl Device {
    pub fn new(id: String, area: Area, start_ts: i64, interval_ms: i64, rng: &mut Rng) -> Device {
        let r = area.radius_m * rng.unit().sqrt();
        let bearing = rng.range(0.0, std::f64::consts::TAU);
        let lat = area.lat + r * bearing.cos() / METRES_PER_DEGREE;
        let lon = area.lon + r * bearing.sin() / (METRES_PER_DEGREE * area.lat.to_radians().cos());
        Device {
            id,
            lat,
            lon,
            heading: rng.range(0.0, 360.0),
            speed_kmh: rng.range(15.0, 110.0),
            altitude: rng.range(80.0, 250.0),
            odometer_m: rng.range(0.0, 2.0e8),
            // Spread first fixes over one interval so devices do not report in lockstep.
            next_ts: start_ts + (rng.unit() * interval_ms as f64) as i64,
            interval_ms,
        }
    }

    /// Moves one report interval and returns the fix.
    pub fn step(&mut self, area: Area, rng: &mut Rng) -> Fix {
        let dt_s = self.interval_ms as f64 / 1000.0;
        let distance = self.speed_kmh / 3.6 * dt_s;
        let heading = self.heading.to_radians();
        self.lat += distance * heading.cos() / METRES_PER_DEGREE;
        self.lon += distance * heading.sin() / (METRES_PER_DEGREE * self.lat.to_radians().cos());
        self.odometer_m += distance;
        // Turn back toward the centre when leaving the area; wander otherwise.
        let dy = (area.lat - self.lat) * METRES_PER_DEGREE;
        let dx = (area.lon - self.lon) * METRES_PER_DEGREE * self.lat.to_radians().cos();
        if (dx * dx + dy * dy).sqrt() > area.radius_m {
            self.heading = dx.atan2(dy).to_degrees().rem_euclid(360.0);
        } else {
            self.heading = (self.heading + rng.range(-12.0, 12.0)).rem_euclid(360.0);
        }
        self.speed_kmh = (self.speed_kmh + rng.range(-6.0, 6.0)).clamp(5.0, 130.0);
        self.altitude = (self.altitude + rng.range(-1.5, 1.5)).clamp(0.0, 2_000.0);
        let fix = Fix {
            device_id: self.id.clone(),
            ts: self.next_ts,
            lat: self.lat,
            lon: self.lon,
            altitude: self.altitude,
            angle: self.heading,
            speed: self.speed_kmh,
            satellites: 6 + (rng.next_u64() % 9) as u8,
            odometer_m: self.odometer_m as u64,
        };
        self.next_ts += self.interval_ms;
        fix
    }
}

impl Fix {
    /// The gateway's JSON payload for this fix.
    pub fn payload(&self, rng: &mut Rng) -> String {
        serde_json::json!({
            "device_id": self.device_id,
            "timestamp": self.ts,
            "latitude": round(self.lat, 7),
            "longitude": round(self.lon, 7),
            "altitude": round(self.altitude, 1),
            "angle": round(self.angle, 1),
            "speed": round(self.speed, 1),
            "satellites": self.satellites,
            "priority": 0,
            "event_io_id": 0,
            "attributes": {
                "ignition": true,
                "movement": self.speed > 1.0,
                "gsm_signal": rng.next_u64() % 6,
                "external_voltage_mv": 12_000 + rng.next_u64() % 2_500,
                "total_odometer_m": self.odometer_m,
                "iccid": 8_937_020_000_000_000_000u64 + rng.next_u64() % 1_000_000,
            }
        })
        .to_string()
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
