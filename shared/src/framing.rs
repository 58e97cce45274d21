//! The Confluent wire format for record values, used when a schema
//! registry is configured (`SCHEMA_REGISTRY_URL`).
//!
//! A framed value is the magic byte `0`, the writer schema's registry id
//! as 4 bytes big-endian, then the JSON document, exactly as Confluent's
//! serializers write it, so their `JSONDeserializer`s read our records. JSON
//! text never begins with a zero byte, so every reader here takes framed
//! and plain values alike: [`unframe`] before parsing.

use serde::Serialize;

/// The first byte of a framed value.
pub const MAGIC: u8 = 0;
/// Magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// `value` framed with `schema_id`.
pub fn frame(schema_id: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// `value` as JSON, framed when a schema id is given.
pub fn to_vec<T: Serialize + ?Sized>(
    schema_id: Option<u32>,
    value: &T,
) -> serde_json::Result<Vec<u8>> {
    let Some(id) = schema_id else {
        return serde_json::to_vec(value);
    };
    let mut out = Vec::with_capacity(256);
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// The JSON of a value and the schema id it was framed with, if it was.
pub fn unframe(value: &[u8]) -> (Option<u32>, &[u8]) {
    match value {
        [MAGIC, a, b, c, d, json @ ..] => (Some(u32::from_be_bytes([*a, *b, *c, *d])), json),
        _ => (None, value),
    }
}

/// The JSON of a value, framed or not.
pub fn json(value: &[u8]) -> &[u8] {
    unframe(value).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_value_is_magic_zero_then_the_id_big_endian_then_the_json() {
        let framed = frame(0x0102_0304, br#"{"a":1}"#);
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&framed[5..], br#"{"a":1}"#);
        assert_eq!(
            to_vec(Some(0x0102_0304), &serde_json::json!({"a": 1})).unwrap(),
            framed
        );
        assert_eq!(unframe(&framed), (Some(0x0102_0304), &br#"{"a":1}"#[..]));
    }

    #[test]
    fn plain_json_reads_as_itself() {
        let plain = to_vec(None, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(plain, br#"{"a":1}"#);
        assert_eq!(unframe(&plain), (None, &plain[..]));
        assert_eq!(json(b""), b"");
        // Too short to be framed: left alone (and refused by the parser).
        assert_eq!(unframe(&[0, 1]), (None, &[0u8, 1][..]));
    }
}
