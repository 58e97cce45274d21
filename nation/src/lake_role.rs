//! The lake beside the game: `lake export` (follow mode) on its own
//! threads, and `GET /api/analytics/{report}` on the bridge's port.
//!
//! The exporter is not the game: when it fails, `/readyz` turns red with
//! the reason and it starts again after a backoff (1 s doubling to 60 s);
//! `/readyz` is green again once a restarted run has lasted 10 s.
//! A restart is safe at any point because the lake, not a consumer group,
//! says where each partition resumes (exactly once: see the `lake` crate).
//! Cancelling the process's token makes it write its open batches and stop.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::{ArgAction, Args};

/// The lake's settings in a game process.
#[derive(Args, Clone, Debug)]
pub struct LakeFlags {
    /// A lake (a folder, or s3://, gs://, az://bucket/prefix): its reports
    /// are served on `GET /api/analytics/{report}`. `make run`: `.data/lake`
    /// (under `NATION_DATA`) unless `WITH_LAKE=false`.
    #[arg(long = "lake", env = "LAKE_DIR")]
    pub lake: Option<String>,
    /// Keep the lake up to date from this process (`lake export` following
    /// `actions` and `games`); off: only serve its reports.
    #[arg(long, env = "WITH_LAKE", default_value_t = true, action = ArgAction::Set)]
    pub with_lake: bool,
    /// How often the reports are recounted (only new files are read).
    #[arg(long, env = "LAKE_REFRESH_MS", default_value_t = 2000)]
    pub lake_refresh_ms: u64,
    /// The in-process exporter cuts a batch when its first record is this
    /// old: how far the lake may trail the game.
    #[arg(long, env = "LAKE_MAX_AGE_MS", default_value_t = 5000)]
    pub lake_max_age_ms: u64,
    /// How often the in-process exporter looks for partitions added to the
    /// game's topics (exported from their start, with no restart).
    #[arg(long, env = "LAKE_PARTITION_CHECK_MS", default_value_t = 10_000)]
    pub lake_partition_check_ms: u64,
    /// The in-process exporter's Parquet compression (as `lake export`).
    #[arg(long, env = "LAKE_COMPRESSION", value_enum, default_value_t = lake::store::Codec::Zstd)]
    pub lake_compression: lake::store::Codec,
}

/// The exporter's state, as `/readyz` reads it: `Err(why)` after a failure
/// until a restarted export runs.
#[derive(Clone, Debug, Default)]
pub struct ExporterHealth(Arc<RwLock<Option<String>>>);

impl ExporterHealth {
    /// `Err(why)` while the exporter is down.
    pub fn check(&self) -> Result<(), String> {
        match self.0.read().map(|s| s.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(why),
            Err(_) => Err("lake exporter: health lock poisoned".into()),
        }
    }

    fn set(&self, why: Option<String>) {
        if let Ok(mut s) = self.0.write() {
            *s = why;
        }
    }
}

/// How long a restarted export must run before `/readyz` is green again.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Runs the exporter until `cancel`, restarting it after failures.
pub async fn run_exporter(
    config: lake::ExportConfig,
    location: lake::Location,
    health: ExporterHealth,
    cancel: ops::CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        // A fresh flag per run: a failing run sets its own to stop its
        // other thread.
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (stop, cancel) = (stop.clone(), cancel.clone());
            tokio::spawn(async move {
                cancel.cancelled().await;
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let (c, l, s) = (config.clone(), location.clone(), stop.clone());
        let mut run = tokio::task::spawn_blocking(move || lake::export(&c, &l, &s));
        // A restarted run that lasts clears the red `/readyz`.
        let result = tokio::select! {
            result = &mut run => result,
            _ = tokio::time::sleep(HEALTHY_AFTER) => {
                health.set(None);
                backoff = Duration::from_secs(1);
                run.await
            }
        };
        watcher.abort();
        let why = match result {
            Ok(Ok(summary)) if cancel.is_cancelled() => {
                tracing::info!(
                    records = summary.records,
                    batches = summary.batches,
                    "lake exporter stopped"
                );
                return;
            }
            Ok(Ok(_)) => "lake exporter: returned while following".to_string(),
            Ok(Err(e)) => format!("lake exporter: {e}"),
            Err(e) => format!("lake exporter: panicked: {e}"),
        };
        tracing::error!(error = %why, retry_in = ?backoff, "the lake exporter stopped: /readyz is red until it runs again");
        health.set(Some(why));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
