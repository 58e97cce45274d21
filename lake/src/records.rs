//! Kafka records as the lake reads them, and lenient views of their values.
//!
//! The views borrow from the record's bytes and read only what the tables
//! need: an `actions` value as the bridge writes [`shared::ActionEnvelope`],
//! but with `event_type` as text (a type the lake does not know yet is still
//! exported), and a `games` value's `applied`/`rejected` lists without
//! decoding the game's state. Tests below keep them in step with `shared`.

use std::borrow::Cow;

use rdkafka::message::{Headers, Message, Timestamp};
use serde::Deserialize;
use smallvec::SmallVec;

/// A record's headers, borrowed: `(name, value)`, values as bytes. Up to
/// four are held inline (the bridge puts three on every action), so
/// reading a record's headers allocates nothing.
pub type HeaderRefs<'a> = SmallVec<[(&'a str, &'a [u8]); 4]>;

/// One Kafka record, owned: what a test or a report check holds, and what
/// `bad_records` keeps of a record it could not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    pub offset: i64,
    /// Kafka timestamp in ms, if the record has one.
    pub timestamp_ms: Option<i64>,
    /// 0 create time, 1 log-append time, -1 none.
    pub timestamp_type: i8,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header `(name, value)` pairs; values as lossy UTF-8.
    pub headers: Vec<(String, String)>,
}

impl RawRecord {
    /// Copies what the lake needs out of any rdkafka message.
    pub fn from_message<M: Message>(msg: &M) -> RawRecord {
        RecordRef::from_message(msg).to_owned()
    }

    /// This record, borrowed, as a batch takes it in.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            timestamp_type: self.timestamp_type,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect(),
        }
    }

    /// Bytes this record holds in memory (for the buffer cap).
    pub fn size(&self) -> usize {
        self.as_ref().size()
    }
}

/// One Kafka record, borrowed from the message librdkafka holds: the
/// exporter decodes it into its batch's columns at once, while its bytes
/// are still in the cache, instead of copying every record out and keeping
/// it until the batch is cut (BENCHMARKS.md, "Lake").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub offset: i64,
    /// Kafka timestamp in ms, if the record has one.
    pub timestamp_ms: Option<i64>,
    /// 0 create time, 1 log-append time, -1 none.
    pub timestamp_type: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Header `(name, value)` pairs, borrowed from the message (copying
    /// them into owned strings, seven allocations per action, was an eighth
    /// of the baseline's time; BENCHMARKS.md, "Lake").
    pub headers: HeaderRefs<'a>,
}

impl<'a> RecordRef<'a> {
    /// Borrows what the lake needs from any rdkafka message.
    pub fn from_message<M: Message>(msg: &'a M) -> RecordRef<'a> {
        let (timestamp_ms, timestamp_type) = match msg.timestamp() {
            Timestamp::NotAvailable => (None, -1),
            Timestamp::CreateTime(t) => (Some(t), 0),
            Timestamp::LogAppendTime(t) => (Some(t), 1),
        };
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        RecordRef {
            offset: msg.offset(),
            timestamp_ms,
            timestamp_type,
            key: msg.key(),
            value: msg.payload(),
            headers,
        }
    }

    /// An owned copy.
    pub fn to_owned(&self) -> RawRecord {
        RawRecord {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            timestamp_type: self.timestamp_type,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        }
    }

    /// Bytes the record would hold in memory as a [`RawRecord`]: what the
    /// roll policy's and the buffer cap's byte limits count.
    pub fn size(&self) -> usize {
        std::mem::size_of::<RawRecord>()
            + self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// An `actions` value, as [`shared::ActionEnvelope`] is serialized.
#[derive(Debug, Deserialize)]
pub struct ActionView<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    pub game_id: u64,
    #[serde(borrow)]
    pub player_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(rename = "Host", borrow, default)]
    pub host: Cow<'a, str>,
    #[serde(rename = "User-Agent", borrow, default)]
    pub user_agent: Cow<'a, str>,
    #[serde(rename = "Accept", borrow, default)]
    pub accept: Cow<'a, str>,
    #[serde(borrow, default)]
    pub client_addr: Cow<'a, str>,
    pub received_at_ms: u64,
    #[serde(default)]
    pub schema_version: u32,
}

impl ActionView<'_> {
    /// Whether this is one of the seed's `filtered_writes`: a purchase or an
    /// upgrade.
    pub fn is_purchase(&self) -> bool {
        self.event_type.starts_with("purchase_") || self.event_type.starts_with("upgrade_")
    }
}

/// Decodes an `actions` value; the error says why it is a bad record.
pub fn decode_action(value: Option<&[u8]>) -> Result<ActionView<'_>, String> {
    let value = value.ok_or("no value")?;
    let view: ActionView<'_> =
        serde_json::from_slice(shared::framing::json(value)).map_err(|e| e.to_string())?;
    if !crate::naming::is_safe_value(&view.event_type) {
        return Err(format!(
            "event_type {:?} is not a safe name",
            view.event_type
        ));
    }
    Ok(view)
}

/// A rejected action inside a `games` value ([`shared::RejectedAction`]);
/// the reason is kept as JSON so a new code never makes a bad record.
#[derive(Debug, Deserialize)]
pub struct RejectedView<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub player_id: Cow<'a, str>,
    pub reason: serde_json::Value,
}

/// What a `games` head record ([`shared::GameHead`]) says the engine did.
#[derive(Debug, Deserialize)]
pub struct OutcomeView<'a> {
    /// `head` or `nation` ([`shared::GamesRecord`]).
    #[serde(borrow, default)]
    pub record: Option<Cow<'a, str>>,
    pub game_id: u64,
    pub version: u64,
    #[serde(borrow, default)]
    pub applied: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rejected: Vec<RejectedView<'a>>,
}

/// A record and its `actions` value decoded ([`decode_action`]).
pub type Decoded<'a> = (RecordRef<'a>, Result<ActionView<'a>, String>);

/// An empty vector with `v`'s allocation, for a `U` that differs from `T`
/// only in lifetimes (the same layout, so the standard library collects in
/// place and allocates nothing): a buffer of borrowed records kept from one
/// run of messages to the next.
pub fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// Decodes a `games` value; a tombstone (no value) and a nation record
/// (the state, not what happened) have no outcomes.
pub fn decode_outcome(value: Option<&[u8]>) -> Result<Option<OutcomeView<'_>>, String> {
    match value {
        None => Ok(None),
        Some(v) => serde_json::from_slice::<OutcomeView<'_>>(shared::framing::json(v))
            .map(|view| (view.record.as_deref() != Some("nation")).then_some(view))
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_vector_keeps_its_allocation_and_holds_nothing() {
        let records: Vec<RawRecord> = (0..3)
            .map(|offset| RawRecord {
                offset,
                timestamp_ms: None,
                timestamp_type: -1,
                key: None,
                value: Some(b"{}".to_vec()),
                headers: Vec::new(),
            })
            .collect();
        let mut kept: Vec<Decoded<'static>> = Vec::with_capacity(64);
        let at = kept.as_ptr() as usize;
        for _ in 0..3 {
            let mut run: Vec<Decoded<'_>> = recycle(std::mem::take(&mut kept));
            assert!(run.is_empty());
            assert_eq!(run.as_ptr() as usize, at, "the same allocation");
            assert!(run.capacity() >= 64);
            run.extend(records.iter().map(|r| {
                let r = r.as_ref();
                let view = decode_action(r.value);
                (r, view)
            }));
            assert_eq!(run.len(), records.len());
            kept = recycle(run);
        }
    }
    use rdkafka::message::{OwnedHeaders, OwnedMessage};

    fn envelope(event_type: shared::ActionType) -> shared::ActionEnvelope {
        shared::ActionEnvelope {
            event_id: "e1".into(),
            game_id: 7,
            player_id: "user1.comcast.com".into(),
            event_type,
            name: None,
            host: "user1.comcast.com".into(),
            user_agent: "ApacheBench/2.3".into(),
            accept: "*/*".into(),
            client_addr: "127.0.0.1".into(),
            received_at_ms: 1_763_800_000_000,
            schema_version: shared::SCHEMA_VERSION,
        }
    }

    #[test]
    fn reads_what_the_bridge_writes() {
        let json = serde_json::to_vec(&envelope(shared::ActionType::PurchaseSword)).unwrap();
        let view = decode_action(Some(&json)).unwrap();
        assert_eq!(view.event_type, "purchase_sword");
        assert_eq!(view.host, "user1.comcast.com");
        assert_eq!(view.user_agent, "ApacheBench/2.3");
        assert_eq!(view.accept, "*/*");
        assert_eq!(view.game_id, 7);
        assert!(view.is_purchase());
        assert!(view.name.is_none());
    }

    #[test]
    fn join_records_keep_the_name() {
        let mut e = envelope(shared::ActionType::Join);
        e.name = Some("Atlantis".into());
        let json = serde_json::to_vec(&e).unwrap();
        let view = decode_action(Some(&json)).unwrap();
        assert_eq!(view.name.as_deref(), Some("Atlantis"));
        assert!(!view.is_purchase());
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        assert!(decode_action(None).is_err());
        assert!(decode_action(Some(b"not json")).is_err());
        assert!(decode_action(Some(b"{\"event_id\":1}")).is_err());
        let mut v = serde_json::to_value(envelope(shared::ActionType::Default)).unwrap();
        v["event_type"] = "../../etc".into();
        let json = serde_json::to_vec(&v).unwrap();
        assert!(decode_action(Some(&json)).unwrap_err().contains("safe"));
    }

    #[test]
    fn reads_outcomes_from_game_updates() {
        let update = shared::GamesRecord::Head(shared::GameHead {
            game_id: 3,
            version: 9,
            applied: vec!["a1".into(), "a2".into()],
            rejected: vec![shared::RejectedAction {
                event_id: "r1".into(),
                player_id: "p".into(),
                reason: shared::Rejection::UnknownPlayer,
                action: None,
            }],
            ..Default::default()
        });
        let json = serde_json::to_vec(&update).unwrap();
        let view = decode_outcome(Some(&json)).unwrap().unwrap();
        assert_eq!((view.game_id, view.version), (3, 9));
        assert_eq!(view.applied, vec!["a1", "a2"]);
        assert_eq!(view.rejected[0].event_id, "r1");
        assert_eq!(view.rejected[0].reason["code"], "unknown_player");
        assert!(decode_outcome(None).unwrap().is_none());
        let nation = shared::GamesRecord::Nation(shared::NationRecord::default());
        let json = serde_json::to_vec(&nation).unwrap();
        assert!(
            decode_outcome(Some(&json)).unwrap().is_none(),
            "state, not outcomes"
        );
        assert!(decode_outcome(Some(b"[]")).is_err());
    }

    #[test]
    fn raw_records_copy_everything_from_a_message() {
        let msg = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"1".to_vec()),
            "actions".into(),
            Timestamp::CreateTime(1234),
            2,
            99,
            Some(OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "error",
                value: Some("boom"),
            })),
        );
        let borrowed = RecordRef::from_message(&msg);
        assert_eq!(borrowed.headers.as_slice(), &[("error", &b"boom"[..])]);
        assert!(!borrowed.headers.spilled(), "held inline, not allocated");
        let raw = RawRecord::from_message(&msg);
        assert_eq!(raw.offset, 99);
        assert_eq!(raw.timestamp_ms, Some(1234));
        assert_eq!(raw.timestamp_type, 0);
        assert_eq!(raw.key.as_deref(), Some(&b"1"[..]));
        assert_eq!(raw.headers, vec![("error".to_string(), "boom".to_string())]);
        assert!(raw.size() > 3);
    }

    #[test]
    fn header_values_are_kept_as_bytes_and_owned_as_lossy_text() {
        let msg = OwnedMessage::new(
            None,
            None,
            "actions".into(),
            Timestamp::NotAvailable,
            0,
            1,
            Some(
                OwnedHeaders::new()
                    .insert(rdkafka::message::Header {
                        key: "bin",
                        value: Some(&[0x61u8, 0xff][..]),
                    })
                    .insert(rdkafka::message::Header::<&[u8]> {
                        key: "empty",
                        value: None,
                    }),
            ),
        );
        let r = RecordRef::from_message(&msg);
        assert_eq!(r.headers[0], ("bin", &[0x61u8, 0xff][..]));
        assert_eq!(r.headers[1], ("empty", &b""[..]));
        assert_eq!(r.timestamp_type, -1);
        let owned = r.to_owned();
        assert_eq!(owned.headers[0], ("bin".into(), "a\u{FFFD}".into()));
        assert_eq!(owned.as_ref().headers[1], ("empty", &b""[..]));
        assert_eq!(
            r.size(),
            owned.size() - 2,
            "lossy text is longer than its bytes"
        );
    }
}
