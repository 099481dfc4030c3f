//! `fleet seed`: the demo's events, entries and devices, and a token for the private event.
//!
//! Idempotent: the two demo events have fixed ids, and their entries are replaced on every
//! run, so seeding again with another `--devices` leaves exactly the new layout.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::fleet::device_id;

pub const PUBLIC_EVENT: Uuid = Uuid::from_u128(0xd3e0c0de_0000_4000_8000_000000000001);
pub const PRIVATE_EVENT: Uuid = Uuid::from_u128(0xd3e0c0de_0000_4000_8000_000000000002);
const PUBLIC_NAME: &str = "Vilnius Night Rally";
const PRIVATE_NAME: &str = "Neris Marathon (private)";
/// How long the printed demo token stays valid.
const TOKEN_LIFETIME_S: u64 = 24 * 3_600;

/// Which event device `i` of `devices` rides in: the last device rides in none (an orphan,
/// as real fleets have), every fourth in the private event, the rest in the public one.
fn event_of(i: usize, devices: usize) -> Option<Uuid> {
    if devices >= 2 && i == devices - 1 {
        None
    } else if i % 4 == 3 {
        Some(PRIVATE_EVENT)
    } else {
        Some(PUBLIC_EVENT)
    }
}

fn entry_id(i: usize) -> Uuid {
    Uuid::from_u128(0xd3e0c0de_0000_4000_9000_000000000000 | i as u128)
}

/// Writes the demo layout and prints `PUBLIC_EVENT=`, `PRIVATE_EVENT=`, `ORPHAN_DEVICE=` and,
/// given a secret, `DEMO_TOKEN=` lines on stdout for scripts to read.
pub async fn seed(
    database_url: &str,
    devices: usize,
    jwt_secret: Option<&str>,
) -> Result<(), String> {
    let (mut client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to Postgres: {e}"))?;
    tokio::spawn(conn);
    let tx = client
        .transaction()
        .await
        .map_err(|e| format!("cannot begin: {e}"))?;
    let upsert = "INSERT INTO events (id, name, visibility) VALUES ($1, $2, $3)
                  ON CONFLICT (id) DO UPDATE SET name = excluded.name, visibility = excluded.visibility";
    for (id, name, visibility) in [
        (PUBLIC_EVENT, PUBLIC_NAME, "public"),
        (PRIVATE_EVENT, PRIVATE_NAME, "private"),
    ] {
        tx.execute(upsert, &[&id, &name, &visibility])
            .await
            .map_err(|e| format!("cannot write the demo events (migrate first): {e}"))?;
    }
    tx.execute(
        "DELETE FROM entries WHERE event_id = ANY($1)",
        &[&vec![PUBLIC_EVENT, PRIVATE_EVENT]],
    )
    .await
    .map_err(|e| format!("cannot clear the demo entries: {e}"))?;
    let (mut entries, mut events, mut names, mut bibs, mut device_ids) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..devices {
        if let Some(event) = event_of(i, devices) {
            entries.push(entry_id(i));
            events.push(event);
            names.push(format!("Runner {}", i + 1));
            bibs.push((i + 1).to_string());
            device_ids.push(device_id(i));
        }
    }
    tx.execute(
        "INSERT INTO entries (id, event_id, name, bib)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])",
        &[&entries, &events, &names, &bibs],
    )
    .await
    .map_err(|e| format!("cannot write the demo entries: {e}"))?;
    tx.execute(
        "INSERT INTO entry_devices (entry_id, device_id) SELECT * FROM unnest($1::uuid[], $2::text[])",
        &[&entries, &device_ids],
    )
    .await
    .map_err(|e| format!("cannot write the demo devices: {e}"))?;
    tx.commit()
        .await
        .map_err(|e| format!("cannot commit the demo layout: {e}"))?;

    let private = events.iter().filter(|e| **e == PRIVATE_EVENT).count();
    eprintln!(
        "fleet: seeded \"{PUBLIC_NAME}\" ({} devices) and \"{PRIVATE_NAME}\" ({private} devices)",
        events.len() - private
    );
    println!("PUBLIC_EVENT={PUBLIC_EVENT}");
    println!("PRIVATE_EVENT={PRIVATE_EVENT}");
    if let Some(i) = (0..devices).find(|&i| event_of(i, devices).is_none()) {
        println!("ORPHAN_DEVICE={}", device_id(i));
    }
    if let Some(secret) = jwt_secret {
        println!("DEMO_TOKEN={}", private_event_token(secret)?);
    }
    Ok(())
}

/// An HS256 token granting the private event, valid for a day.
fn private_event_token(secret: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "sub": "demo",
        "events": [PRIVATE_EVENT.to_string()],
        "exp": now + TOKEN_LIFETIME_S,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot sign the demo token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_device_is_an_orphan_and_every_fourth_is_private() {
        let layout: Vec<_> = (0..6).map(|i| event_of(i, 6)).collect();
        assert_eq!(
            layout,
            [
                Some(PUBLIC_EVENT),
                Some(PUBLIC_EVENT),
                Some(PUBLIC_EVENT),
                Some(PRIVATE_EVENT),
                Some(PUBLIC_EVENT),
                None
            ]
        );
        assert_eq!(event_of(0, 1), Some(PUBLIC_EVENT));
    }
}
