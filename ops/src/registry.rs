//! A Confluent-compatible schema registry (`SCHEMA_REGISTRY_URL`): the
//! producers register the JSON Schema of what they write under the
//! TopicRecordNameStrategy subject and frame each value with its id
//! ([`shared::framing`]), so a Confluent `JSONDeserializer` reads our
//! topics and the registry's compatibility rules guard every change.
//!
//! Only the two calls a producer needs: register a schema (idempotent: the
//! same schema gets the same id) and read one back by id.

use std::time::Duration;

use serde::Deserialize;

/// The content type of the registry's REST API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why a schema could not be registered or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error: 409 an incompatible schema, 422
    /// an invalid one, 5xx its own trouble.
    #[error("schema registry {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

impl RegistryError {
    /// Whether asking again later may succeed (the registry is down or
    /// busy); not for a schema it refuses.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Refused { status, .. } => *status >= 500,
        }
    }
}

/// The subject of a record type under the TopicRecordNameStrategy:
/// `<topic>-<record name>`, the record name being the schema's `title`.
pub fn subject(topic: &str, record_name: &str) -> String {
    format!("{topic}-{record_name}")
}

/// A schema registry's REST API.
#[derive(Clone, Debug)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct Fetched {
    schema: String,
}

impl Registry {
    /// The registry at `url` (e.g. `http://registry:8081`, or Apicurio's
    /// `http://host:8080/apis/ccompat/v7`).
    pub fn new(url: &str) -> Registry {
        Registry {
            base: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with default TLS settings"),
        }
    }

    /// Registers `schema` (a JSON Schema document) under `subject` and
    /// returns its id; the same schema again returns the same id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let body = serde_json::json!({"schemaType": "JSON", "schema": schema});
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body.to_string());
        let registered: Registered = call(&url, request).await?;
        Ok(registered.id)
    }

    /// The schema registered under `id`.
    pub async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let fetched: Fetched = call(&url, self.http.get(&url)).await?;
        Ok(fetched.schema)
    }

    /// Registers `schema` under `topic`'s subject for it, retrying a
    /// registry that is down or busy for up to `patience`: what a producer
    /// calls once at start-up.
    pub async fn register_for(
        &self,
        topic: &str,
        record_name: &str,
        schema: &str,
        patience: Duration,
    ) -> Result<u32, RegistryError> {
        let subject = subject(topic, record_name);
        let deadline = tokio::time::Instant::now() + patience;
        let mut wait = Duration::from_millis(100);
        loop {
            match self.register(&subject, schema).await {
                Ok(id) => {
                    tracing::info!(%subject, id, "schema registered");
                    return Ok(id);
                }
                Err(e) if e.is_transient() && tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(%subject, "registering the schema: {e}; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Sends `request` (to `url`) and reads the JSON of a 2xx answer, or the
/// registry's error.
async fn call<T: for<'de> Deserialize<'de>>(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, RegistryError> {
    let answer = request
        .header(reqwest::header::ACCEPT, CONTENT_TYPE)
        .send()
        .await
        .map_err(|source| RegistryError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let status = answer.status();
    let bytes = answer
        .bytes()
        .await
        .map_err(|source| RegistryError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let refused = |body: String| RegistryError::Refused {
        url: url.to_string(),
        status: status.as_u16(),
        body,
    };
    if !status.is_success() {
        return Err(refused(String::from_utf8_lossy(&bytes).into_owned()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| refused(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
}
