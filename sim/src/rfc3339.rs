//! RFC 3339 text for a millisecond timestamp, so that generated payloads can spell one fix
//! time two ways (the decoder must give both the same key).

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmm` plus `Z` or a `+HH:MM` offset.
pub fn format(ms: i64, offset_minutes: i32) -> String {
    let local = ms + i64::from(offset_minutes) * 60_000;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let zone = if offset_minutes == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let abs = offset_minutes.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1_000 % 60,
        rem % 1_000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn known_instants() {
        assert_eq!(format(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_764_000_000_000, 0), "2025-11-24T16:00:00.000Z");
        assert_eq!(
            format(1_764_000_000_123, 120),
            "2025-11-24T18:00:00.123+02:00"
        );
        assert_eq!(format(951_782_400_000, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            format(1_764_000_000_000, -330),
            "2025-11-24T10:30:00.000-05:30"
        );
    }

    #[test]
    fn the_decoder_agrees() {
        for (ms, offset) in [
            (1_764_000_000_000, 0),
            (1_764_000_123_456, 60),
            (86_399_999, -90),
        ] {
            let payload = format!(
                r#"{{"device_id":"1","timestamp":"{}","latitude":1,"longitude":1}}"#,
                format(ms, offset)
            );
            let p = processor_core::decode_position(payload.as_bytes()).unwrap();
            assert_eq!(p.ts.as_i64(), ms);
        }
    }
}
