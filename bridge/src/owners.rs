//! Interactive queries to the engines: which engine owns a game's
//! partition, and its answer for the game's whole state.
//!
//! Kafka Streams leaves the RPC of its interactive queries to its users;
//! here it is built in. Each engine names its `actions` consumer
//! `engine@<query url>`; the consumer group's description (ListGroups /
//! DescribeGroups: each member's client id and assignment) maps every
//! partition to the URL of its owner. The map is cached and read again when
//! an owner does not answer, answers that it no longer owns the partition
//! (`421`), or none is known (a rebalance in progress). An owner still
//! restoring the partition answers `503`: asked again shortly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use shared::{partition_for, GameSnapshot};

use crate::games::SnapshotSource;

/// What engines put before their query URL in `client.id`.
pub const CLIENT_ID_PREFIX: &str = "engine@";

/// How long a query may take, re-asking included, before it fails.
const QUERY_DEADLINE: Duration = Duration::from_secs(10);

/// Partition → query URL of the engine that owns it, from the group.
pub struct Owners {
    client: BaseConsumer,
    group: String,
    topic: String,
    map: Mutex<HashMap<i32, String>>,
}

impl Owners {
    /// Owners of `topic`'s partitions in consumer group `group`.
    pub fn new(client: BaseConsumer, group: &str, topic: &str) -> Owners {
        Owners {
            client,
            group: group.to_string(),
            topic: topic.to_string(),
            map: Mutex::default(),
        }
    }

    /// The owner of `partition` as last read.
    pub fn cached(&self, partition: i32) -> Option<String> {
        self.map
            .lock()
            .expect("owners lock")
            .get(&partition)
            .cloned()
    }

    /// Reads the group's description again (blocking: a broker round trip).
    pub fn refresh(&self) -> Result<(), String> {
        let groups = self
            .client
            .fetch_group_list(Some(&self.group), Duration::from_secs(5))
            .map_err(|e| format!("describe group {}: {e}", self.group))?;
        let mut map = HashMap::new();
        for group in groups.groups() {
            for member in group.members() {
                let Some(url) = member.client_id().strip_prefix(CLIENT_ID_PREFIX) else {
                    continue;
                };
                let Some(assignment) = member.assignment() else {
                    continue;
                };
                for p in assigned_partitions(assignment, &self.topic) {
                    map.insert(p, url.to_string());
                }
            }
        }
        *self.map.lock().expect("owners lock") = map;
        Ok(())
    }
}

/// The partitions of `topic` in a consumer-protocol assignment (Kafka's
/// `ConsumerProtocolAssignment`: int16 version, then an int32 count of
/// (string topic, int32 count of int32 partitions), then user data).
pub fn assigned_partitions(bytes: &[u8], topic: &str) -> Vec<i32> {
    let mut r = Cursor(bytes);
    let mut out = Vec::new();
    let parsed = (|| {
        r.i16()?;
        let topics = r.i32()?;
        for _ in 0..topics.max(0) {
            let len = r.i16()?;
            let name = r.take(len.max(0) as usize)?;
            let count = r.i32()?;
            for _ in 0..count.max(0) {
                let p = r.i32()?;
                if name == topic.as_bytes() {
                    out.push(p);
                }
            }
        }
        Some(())
    })();
    if parsed.is_none() {
        tracing::warn!("undecodable group assignment");
    }
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// A [`SnapshotSource`] that asks the owning engine.
pub struct EngineQueries {
    owners: Arc<Owners>,
    http: reqwest::Client,
    partitions: i32,
}

impl EngineQueries {
    pub fn new(owners: Owners, partitions: i32) -> EngineQueries {
        EngineQueries {
            owners: Arc::new(owners),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            partitions,
        }
    }
}

/// What one attempt found.
enum Attempt {
    Found(Option<GameSnapshot>),
    /// Ask the group who owns it, then again.
    Refresh(String),
    /// The owner is restoring: again shortly.
    Later(String),
}

async fn attempt(http: &reqwest::Client, url: &str, game_id: u64) -> Attempt {
    let response = match http.get(format!("{url}/games/{game_id}")).send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Refresh(format!("{url}: {e}")),
    };
    match response.status().as_u16() {
        200 => match response.json::<GameSnapshot>().await {
            Ok(snapshot) => Attempt::Found(Some(snapshot)),
            Err(e) => Attempt::Later(format!("{url}: bad answer: {e}")),
        },
        404 => Attempt::Found(None),
        503 => Attempt::Later(format!("{url}: restoring")),
        status => Attempt::Refresh(format!("{url}: {status}")),
    }
}

impl SnapshotSource for EngineQueries {
    fn snapshot(&self, game_id: u64) -> BoxFuture<'static, Result<Option<GameSnapshot>, String>> {
        let owners = self.owners.clone();
        let http = self.http.clone();
        let partition = partition_for(game_id, self.partitions);
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + QUERY_DEADLINE;
            let mut wait = Duration::from_millis(5);
            let mut last = String::from("no engine owns the partition");
            loop {
                let url = match owners.cached(partition) {
                    Some(url) => url,
                    None => {
                        let o = owners.clone();
                        match tokio::task::spawn_blocking(move || o.refresh()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => last = e,
                            Err(e) => last = e.to_string(),
                        }
                        match owners.cached(partition) {
                            Some(url) => url,
                            None => {
                                if tokio::time::Instant::now() + wait > deadline {
                                    return Err(last);
                                }
                                tokio::time::sleep(wait).await;
                                wait = (wait * 2).min(Duration::from_millis(500));
                                continue;
                            }
                        }
                    }
                };
                match attempt(&http, &url, game_id).await {
                    Attempt::Found(found) => return Ok(found),
                    Attempt::Refresh(why) => {
                        last = why;
                        let o = owners.clone();
                        let _ = tokio::task::spawn_blocking(move || o.refresh()).await;
                    }
                    Attempt::Later(why) => last = why,
                }
                if tokio::time::Instant::now() + wait > deadline {
                    return Err(last);
                }
                // Back-off between attempts (not a synchronisation: the
                // owner is restoring or the group rebalancing).
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(1i16.to_be_bytes());
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, parts) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in *parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        b
    }

    #[test]
    fn reads_the_partitions_of_one_topic_from_an_assignment() {
        let bytes = assignment(&[("other", &[0, 1]), ("actions", &[3, 7])]);
        assert_eq!(assigned_partitions(&bytes, "actions"), vec![3, 7]);
        assert!(assigned_partitions(&bytes, "games").is_empty());
    }

    #[test]
    fn a_truncated_assignment_gives_what_it_could_read() {
        let bytes = assignment(&[("actions", &[3, 7])]);
        assert_eq!(
            assigned_partitions(&bytes[..bytes.len() - 8], "actions"),
            vec![3]
        );
        assert!(assigned_partitions(&[], "actions").is_empty());
    }
}
