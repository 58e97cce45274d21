//! JSON Schemas for the records on the topics, generated from the types.
//!
//! The checked-in copies under `shared/schema/` are what outside consumers
//! (Spark jobs, a schema registry) read; a test fails when they drift from
//! the types. Regenerate with `UPDATE_SCHEMA=1 cargo test -p shared schema`.

use crate::wire::{ActionEnvelope, GameSnapshot, GamesRecord, ServerMessage};

/// The schema of `actions` records, pretty-printed.
pub fn action_envelope() -> String {
    pretty(schemars::schema_for!(ActionEnvelope))
}

/// The schema of `games` records, pretty-printed.
pub fn games_record() -> String {
    pretty(schemars::schema_for!(GamesRecord))
}

/// The schema of `GET /api/games/{game_id}` answers, pretty-printed.
pub fn game_snapshot() -> String {
    pretty(schemars::schema_for!(GameSnapshot))
}

/// The schema of the WebSocket messages, pretty-printed.
pub fn server_message() -> String {
    pretty(schemars::schema_for!(ServerMessage))
}

/// Every schema with the file name it is checked in under.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("action_envelope.schema.json", action_envelope()),
        ("games_record.schema.json", games_record()),
        ("game_snapshot.schema.json", game_snapshot()),
        ("server_message.schema.json", server_message()),
    ]
}

fn pretty(schema: schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn checked_in_schemas_match_the_types() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
        let update = std::env::var_os("UPDATE_SCHEMA").is_some();
        for (name, generated) in super::all() {
            let path = dir.join(name);
            if update {
                std::fs::write(&path, &generated).expect("write schema");
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}); run UPDATE_SCHEMA=1 cargo test -p shared schema",
                    path.display()
                )
            });
            assert_eq!(
                on_disk, generated,
                "{name} drifted from the types; run UPDATE_SCHEMA=1 cargo test -p shared schema"
            );
        }
    }

    #[test]
    fn envelope_schema_keeps_the_seed_field_names() {
        let schema: serde_json::Value = serde_json::from_str(&super::action_envelope()).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for field in [
            "event_type",
            "Host",
            "User-Agent",
            "Accept",
            "event_id",
            "game_id",
            "player_id",
            "client_addr",
            "received_at_ms",
            "schema_version",
        ] {
            assert!(
                props.contains_key(field),
                "{field} missing from the envelope schema"
            );
        }
    }
}
