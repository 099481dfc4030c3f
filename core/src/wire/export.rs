//! Track export (contract section 5.1, `GET /events/<uuid>/tracks`): the query and the
//! documents, written piece by piece as the rows are read, so that an export is never
//! built whole in memory.
//!
//! GeoJSON: a FeatureCollection with one `LineString` feature per device, its coordinates
//! `[lon, lat]` (RFC 7946 order) and `properties.timestamps` (epoch milliseconds, one per
//! coordinate), `properties.deviceId`. The coordinates are written as the rows come; the
//! timestamps of the device being written are kept (8 bytes a point) and written after
//! them: JSON members have no order, so `geometry` comes before `properties`. A device with
//! one position in the window gets it twice (a line of zero length, and its timestamp
//! twice): RFC 7946 wants two or more positions in a `LineString`, and a reader that
//! checks would refuse the whole document over one such device.
//! GPX 1.1: one `trk` per device named by its id, one `trkseg`, a `trkpt` per position.

use std::fmt::Write as _;

use thiserror::Error;

/// An export's time window, epoch milliseconds, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportWindow {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    GeoJson,
    Gpx,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::GeoJson => "application/geo+json",
            ExportFormat::Gpx => "application/gpx+xml",
        }
    }
}

/// What was wrong with an export's query string; the text names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExportQueryError {
    #[error("`{0}` is required: epoch milliseconds")]
    Missing(&'static str),
    #[error("`{0}` must be a whole number of epoch milliseconds, 0 or more")]
    NotMillis(&'static str),
    #[error("`from` must not be after `to`")]
    Reversed,
    #[error("`format` must be `geojson` or `gpx`")]
    Format,
    #[error("`{0}` is given twice")]
    Repeated(&'static str),
}

/// Parses `from=<ms>&to=<ms>[&format=gpx|geojson]`; other parameters (`access_token`) are
/// ignored.
pub fn parse_export_query(
    query: Option<&str>,
) -> Result<(ExportWindow, ExportFormat), ExportQueryError> {
    let (mut from, mut to, mut format) = (None, None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "from" => set(&mut from, "from", millis(value, "from")?)?,
            "to" => set(&mut to, "to", millis(value, "to")?)?,
            "format" => {
                let f = match value {
                    "geojson" => ExportFormat::GeoJson,
                    "gpx" => ExportFormat::Gpx,
                    _ => return Err(ExportQueryError::Format),
                };
                set(&mut format, "format", f)?;
            }
            _ => {}
        }
    }
    let from = from.ok_or(ExportQueryError::Missing("from"))?;
    let to = to.ok_or(ExportQueryError::Missing("to"))?;
    if from > to {
        return Err(ExportQueryError::Reversed);
    }
    Ok((
        ExportWindow { from, to },
        format.unwrap_or(ExportFormat::GeoJson),
    ))
}

fn set<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), ExportQueryError> {
    if slot.replace(value).is_some() {
        return Err(ExportQueryError::Repeated(name));
    }
    Ok(())
}

fn millis(value: &str, name: &'static str) -> Result<i64, ExportQueryError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|ms| *ms >= 0)
        .ok_or(ExportQueryError::NotMillis(name))
}

/// Writes one export document into buffers the caller drains as it likes: [`begin`],
/// [`point`] for every position (grouped by device, in `ts` order), [`end`].
///
/// [`begin`]: TrackWriter::begin
/// [`point`]: TrackWriter::point
/// [`end`]: TrackWriter::end
#[derive(Debug)]
pub struct TrackWriter {
    format: ExportFormat,
    /// The device being written, if any.
    device: Option<String>,
    /// Its timestamps so far (GeoJSON).
    timestamps: Vec<i64>,
    /// Its last coordinate, `[lon,lat]` (GeoJSON).
    last: String,
    devices_written: usize,
}

impl TrackWriter {
    pub fn new(format: ExportFormat) -> TrackWriter {
        TrackWriter {
            format,
            device: None,
            timestamps: Vec::new(),
            last: String::new(),
            devices_written: 0,
        }
    }

    pub fn begin(&mut self, out: &mut Vec<u8>) {
        match self.format {
            ExportFormat::GeoJson => {
                out.extend_from_slice(br#"{"type":"FeatureCollection","features":["#)
            }
            ExportFormat::Gpx => out.extend_from_slice(
                br#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="processor" xmlns="http://www.topografix.com/GPX/1/1">
"#,
            ),
        }
    }

    /// One position of `device`; a device other than the last one's ends that one's track.
    pub fn point(&mut self, device: &str, ts: i64, lat: f64, lon: f64, out: &mut Vec<u8>) {
        if self.device.as_deref() != Some(device) {
            self.close_device(out);
            self.open_device(device, out);
        }
        let mut text = String::new();
        match self.format {
            ExportFormat::GeoJson => {
                if !self.timestamps.is_empty() {
                    text.push(',');
                }
                self.last.clear();
                let _ = write!(self.last, "[{},{}]", number(lon), number(lat));
                text.push_str(&self.last);
                self.timestamps.push(ts);
            }
            ExportFormat::Gpx => {
                let _ = writeln!(
                    text,
                    "<trkpt lat=\"{}\" lon=\"{}\"><time>{}</time></trkpt>",
                    number(lat),
                    number(lon),
                    rfc3339_millis(ts)
                );
            }
        }
        out.extend_from_slice(text.as_bytes());
    }

    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.close_device(out);
        match self.format {
            ExportFormat::GeoJson => out.extend_from_slice(b"]}"),
            ExportFormat::Gpx => out.extend_from_slice(b"</gpx>\n"),
        }
    }

    fn open_device(&mut self, device: &str, out: &mut Vec<u8>) {
        match self.format {
            ExportFormat::GeoJson => {
                if self.devices_written > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    br#"{"type":"Feature","geometry":{"type":"LineString","coordinates":["#,
                );
            }
            ExportFormat::Gpx => {
                out.extend_from_slice(b"<trk><name>");
                out.extend_from_slice(xml_escape(device).as_bytes());
                out.extend_from_slice(b"</name><trkseg>\n");
            }
        }
        self.device = Some(device.to_owned());
        self.timestamps.clear();
        self.devices_written += 1;
    }

    fn close_device(&mut self, out: &mut Vec<u8>) {
        let Some(device) = self.device.take() else {
            return;
        };
        match self.format {
            ExportFormat::GeoJson => {
                if let [only] = self.timestamps[..] {
                    out.push(b',');
                    out.extend_from_slice(self.last.as_bytes());
                    self.timestamps.push(only);
                }
                out.extend_from_slice(br#"]},"properties":{"deviceId":"#);
                // A string always serialises.
                out.extend_from_slice(&serde_json::to_vec(&device).unwrap_or_default());
                out.extend_from_slice(br#","timestamps":["#);
                let mut text = String::new();
                for (i, ts) in self.timestamps.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    let _ = write!(text, "{ts}");
                }
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"]}}");
            }
            ExportFormat::Gpx => out.extend_from_slice(b"</trkseg></trk>\n"),
        }
        self.timestamps.clear();
    }
}

/// A coordinate as JSON and XML both accept it (stored coordinates are finite).
fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_owned()
    }
}

fn rfc3339_millis(ts: i64) -> String {
    let nanos = i128::from(ts) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(format: ExportFormat, points: &[(&str, i64, f64, f64)]) -> String {
        let mut w = TrackWriter::new(format);
        let mut out = Vec::new();
        w.begin(&mut out);
        for (d, ts, lat, lon) in points {
            w.point(d, *ts, *lat, *lon, &mut out);
        }
        w.end(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn geojson_has_one_linestring_per_device_with_its_timestamps_and_two_positions_at_least() {
        let text = document(
            ExportFormat::GeoJson,
            &[
                ("a", 1, 54.5, 25.5),
                ("a", 2, 54.6, 25.6),
                ("b", 3, 1.5, 2.5),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "FeatureCollection", "features": [
                {"type": "Feature",
                 "geometry": {"type": "LineString", "coordinates": [[25.5, 54.5], [25.6, 54.6]]},
                 "properties": {"deviceId": "a", "timestamps": [1, 2]}},
                {"type": "Feature",
                 "geometry": {"type": "LineString", "coordinates": [[2.5, 1.5], [2.5, 1.5]]},
                 "properties": {"deviceId": "b", "timestamps": [3, 3]}},
            ]})
        );
        let empty: serde_json::Value =
            serde_json::from_str(&document(ExportFormat::GeoJson, &[])).unwrap();
        assert_eq!(empty["features"], serde_json::json!([]));
    }

    #[test]
    fn gpx_has_one_trk_per_device_and_escapes_names() {
        let text = document(
            ExportFormat::Gpx,
            &[("a<&>", 1_764_324_000_123, 54.5, 25.5), ("b", 0, 1.0, 2.0)],
        );
        assert!(text.starts_with("<?xml version=\"1.0\""));
        assert!(text.contains("<trk><name>a&lt;&amp;&gt;</name><trkseg>\n<trkpt lat=\"54.5\" lon=\"25.5\"><time>2025-11-28T10:00:00.123Z</time></trkpt>\n</trkseg></trk>"), "{text}");
        assert!(text.contains("<trk><name>b</name>"));
        assert!(text.ends_with("</gpx>\n"));
    }

    #[test]
    fn the_query_names_what_is_wrong() {
        let ok = parse_export_query(Some("from=1&to=2&access_token=x"));
        assert_eq!(
            ok,
            Ok((ExportWindow { from: 1, to: 2 }, ExportFormat::GeoJson))
        );
        assert_eq!(
            parse_export_query(Some("from=1&to=2&format=gpx")).map(|q| q.1),
            Ok(ExportFormat::Gpx)
        );
        for (query, error) in [
            ("to=2", ExportQueryError::Missing("from")),
            ("from=1", ExportQueryError::Missing("to")),
            ("from=x&to=2", ExportQueryError::NotMillis("from")),
            ("from=1&to=-2", ExportQueryError::NotMillis("to")),
            ("from=3&to=2", ExportQueryError::Reversed),
            ("from=1&to=2&format=kml", ExportQueryError::Format),
            ("from=1&from=1&to=2", ExportQueryError::Repeated("from")),
        ] {
            assert_eq!(parse_export_query(Some(query)), Err(error), "{query}");
        }
        assert_eq!(
            parse_export_query(None),
            Err(ExportQueryError::Missing("from"))
        );
    }
}
