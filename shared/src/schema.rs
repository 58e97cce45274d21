//! JSON Schemas for the records on the topics, generated from the types.
//!
//! The checked-in copies under `shared/schema/` are what outside consumers
//! (Spark jobs, a schema registry) read; a test fails when they drift from
//! the types. Regenerate with `UPDATE_SCHEMA=1 cargo test -p shared schema`.
//!
//! `shared/schema/released/` holds the schemas of the last release: what
//! readers in the field were built against. [`breaking_changes`] compares
//! them with the working tree's, and a test fails on any change that would
//! break such a reader (a record the new code writes that the released
//! schema refuses). A deliberate break is released by raising the record's
//! schema version and copying the new schemas over the released ones
//! (`RELEASE_SCHEMA=1 cargo test -p shared schema`).

use crate::wire::{ActionEnvelope, GameSnapshot, GamesRecord, ServerMessage};

/// The record name (schema `title`) of `actions` records: their subject is
/// `<topic>-ActionEnvelope` under the TopicRecordNameStrategy.
pub const ACTION_ENVELOPE: &str = "ActionEnvelope";
/// The record name (schema `title`) of `games` records.
pub const GAMES_RECORD: &str = "GamesRecord";

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

/// Why a record valid under `new` could be refused by a reader of `old`
/// (both JSON Schemas, `$ref`s into their own `$defs`); empty when every
/// record `new` allows, `old` allows too, as far as these rules see: types
/// may only narrow, required fields may only be added, enums and consts may
/// only shrink, string and number limits may only tighten, a closed object
/// may not gain properties, and a tagged `oneOf` may not gain a tag.
pub fn breaking_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    compare(old, old, new, new, "$", &mut out, 0);
    out
}

fn resolve<'a>(
    root: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match schema.get("$ref").and_then(|r| r.as_str()) {
        Some(r) if r.starts_with("#/$defs/") => root
            .pointer(&format!("/$defs/{}", &r["#/$defs/".len()..]))
            .unwrap_or(schema),
        _ => schema,
    }
}

fn types(schema: &serde_json::Value) -> Option<Vec<String>> {
    match schema.get("type")? {
        serde_json::Value::String(t) => Some(vec![t.clone()]),
        serde_json::Value::Array(ts) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// A `oneOf` variant's tag: the `const` of its one tagged property.
fn tag(root: &serde_json::Value, variant: &serde_json::Value) -> Option<String> {
    let own = |v: &serde_json::Value| {
        v.get("properties")
            .and_then(|p| p.as_object())
            .and_then(|p| {
                p.values()
                    .find_map(|p| p.get("const").map(|c| c.to_string()))
            })
            .or_else(|| v.get("const").map(|c| c.to_string()))
    };
    own(variant).or_else(|| own(resolve(root, variant)))
}

fn compare(
    old_root: &serde_json::Value,
    old: &serde_json::Value,
    new_root: &serde_json::Value,
    new: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    // A schema with both a `$ref` and its own keywords: compare both parts.
    if old.get("$ref").is_some() || new.get("$ref").is_some() {
        let (o, n) = (resolve(old_root, old), resolve(new_root, new));
        if !std::ptr::eq(o, old) || !std::ptr::eq(n, new) {
            compare(old_root, o, new_root, n, at, out, depth + 1);
        }
    }
    if let (Some(o), Some(n)) = (types(old), types(new)) {
        // "integer" is a kind of "number".
        let widened: Vec<&String> = n
            .iter()
            .filter(|t| {
                !(o.contains(t) || (t.as_str() == "integer" && o.iter().any(|x| x == "number")))
            })
            .collect();
        if !widened.is_empty() {
            out.push(format!("{at}: type {widened:?} was not allowed ({o:?})"));
        }
    } else if types(old).is_some()
        && types(new).is_none()
        && new.get("$ref").is_none()
        && new.get("oneOf").is_none()
    {
        out.push(format!("{at}: no longer says its type"));
    }
    for key in ["enum"] {
        if let Some(o) = old.get(key).and_then(|v| v.as_array()) {
            match new.get(key).and_then(|v| v.as_array()) {
                Some(n) => {
                    let added: Vec<&serde_json::Value> =
                        n.iter().filter(|v| !o.contains(v)).collect();
                    if !added.is_empty() {
                        out.push(format!(
                            "{at}: new values {added:?} a released reader does not know"
                        ));
                    }
                }
                None => out.push(format!("{at}: no longer an enum")),
            }
        }
    }
    if let Some(o) = old.get("const") {
        if new.get("const") != Some(o) {
            out.push(format!("{at}: const {o} changed or dropped"));
        }
    }
    for key in ["maxLength", "maximum", "maxItems"] {
        if let Some(o) = old.get(key).and_then(|v| v.as_f64()) {
            match new.get(key).and_then(|v| v.as_f64()) {
                Some(n) if n <= o => {}
                _ => out.push(format!("{at}: {key} loosened from {o}")),
            }
        }
    }
    for key in ["minLength", "minimum", "minItems"] {
        if let Some(o) = old.get(key).and_then(|v| v.as_f64()) {
            match new.get(key).and_then(|v| v.as_f64()) {
                Some(n) if n >= o => {}
                _ => out.push(format!("{at}: {key} loosened from {o}")),
            }
        }
    }
    let required = |s: &serde_json::Value| -> Vec<String> {
        s.get("required")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let new_required = required(new);
    for field in required(old) {
        if !new_required.contains(&field) {
            out.push(format!("{at}: `{field}` is no longer required"));
        }
    }
    let empty = serde_json::Map::new();
    let old_props = old
        .get("properties")
        .and_then(|p| p.as_object())
        .unwrap_or(&empty);
    let new_props = new
        .get("properties")
        .and_then(|p| p.as_object())
        .unwrap_or(&empty);
    for (name, o) in old_props {
        if let Some(n) = new_props.get(name) {
            compare(
                old_root,
                o,
                new_root,
                n,
                &format!("{at}.{name}"),
                out,
                depth + 1,
            );
        }
    }
    if old.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
        for name in new_props.keys().filter(|k| !old_props.contains_key(*k)) {
            out.push(format!("{at}: new property `{name}` in a closed object"));
        }
    }
    if let (Some(o), Some(n)) = (old.get("items"), new.get("items")) {
        compare(old_root, o, new_root, n, &format!("{at}[]"), out, depth + 1);
    }
    for key in ["oneOf", "anyOf"] {
        let (Some(o), Some(n)) = (
            old.get(key).and_then(|v| v.as_array()),
            new.get(key).and_then(|v| v.as_array()),
        ) else {
            if old.get(key).is_some() != new.get(key).is_some() {
                out.push(format!("{at}: {key} added or dropped"));
            }
            continue;
        };
        for (i, variant) in n.iter().enumerate() {
            let matched = match tag(new_root, variant) {
                Some(t) => o
                    .iter()
                    .find(|v| tag(old_root, v).as_deref() == Some(t.as_str())),
                None => o.get(i),
            };
            match matched {
                Some(old_variant) => compare(
                    old_root,
                    old_variant,
                    new_root,
                    variant,
                    &format!("{at}.{key}[{i}]"),
                    out,
                    depth + 1,
                ),
                None => out.push(format!(
                    "{at}: {key} variant {} a released reader does not know",
                    tag(new_root, variant).unwrap_or_else(|| i.to_string())
                )),
            }
        }
    }
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
    fn record_names_are_the_schemas_titles() {
        // The registry subjects (`<topic>-<record name>`) take the title, as
        // Confluent's JSON serializers do.
        for (name, schema) in [
            (super::ACTION_ENVELOPE, super::action_envelope()),
            (super::GAMES_RECORD, super::games_record()),
        ] {
            let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
            assert_eq!(schema["title"], name);
            // Registries tell a JSON Schema by its `$schema`.
            assert!(schema["$schema"]
                .as_str()
                .is_some_and(|s| s.contains("json-schema.org")));
        }
    }

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

    /// The working tree's schemas against the last released ones: no
    /// change that would break a reader built against the release.
    #[test]
    fn schemas_stay_compatible_with_the_last_release() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/released");
        let release = std::env::var_os("RELEASE_SCHEMA").is_some();
        let mut broken = Vec::new();
        for (name, generated) in super::all() {
            let path = dir.join(name);
            if release {
                std::fs::write(&path, &generated).expect("write released schema");
            }
            let released = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{} is missing ({e})", path.display()));
            let old: serde_json::Value = serde_json::from_str(&released).unwrap();
            let new: serde_json::Value = serde_json::from_str(&generated).unwrap();
            for why in super::breaking_changes(&old, &new) {
                broken.push(format!("{name}: {why}"));
            }
        }
        assert!(
            broken.is_empty(),
            "changes that break readers of the released schemas (raise the schema version and release with RELEASE_SCHEMA=1 cargo test -p shared schema):\n{}",
            broken.join("\n")
        );
    }

    /// The check catches what would break a reader.
    #[test]
    fn breaking_changes_are_caught_and_compatible_ones_pass() {
        let old: serde_json::Value = serde_json::from_str(&super::action_envelope()).unwrap();
        assert!(super::breaking_changes(&old, &old).is_empty());
        let mut dropped = old.clone();
        dropped["required"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f != "game_id");
        assert!(!super::breaking_changes(&old, &dropped).is_empty());
        let mut retyped = old.clone();
        retyped["properties"]["game_id"]["type"] = serde_json::json!("string");
        assert!(!super::breaking_changes(&old, &retyped).is_empty());
        let mut widened = old.clone();
        let enumed = widened.pointer_mut("/$defs/ActionType").unwrap();
        if let Some(values) = enumed.get_mut("enum").and_then(|e| e.as_array_mut()) {
            values.push(serde_json::json!("teleport"));
        } else {
            panic!("the action type is an enum: {enumed}");
        }
        assert!(!super::breaking_changes(&old, &widened).is_empty());
        // An optional field added to an open object breaks no reader.
        let mut added = old.clone();
        added["properties"]["mood"] = serde_json::json!({"type": "string"});
        assert!(
            super::breaking_changes(&old, &added).is_empty(),
            "{:?}",
            super::breaking_changes(&old, &added)
        );
    }
}
