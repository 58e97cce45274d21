//! The engine's metrics, in the process's [`ops::metrics::Registry`]:
//! batch sizes, apply and commit latency, transactions committed and
//! aborted, what became of each action (applied, rejected by code,
//! duplicate, dead-lettered), and the `actions` consumer's lag.

use ops::metrics::{ConsumerLag, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use crate::handle::Handled;

/// Labels of an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Labels of a rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

/// The outcomes of an action, as counted.
const OUTCOMES: [&str; 5] = [
    "applied",
    "rejected",
    "duplicate",
    "already_included",
    "dead_letter",
];
const DUPLICATE: usize = 2;

/// What became of a batch's actions, counted in place and added to the
/// shared counters once per batch (a label lookup per action was 2 % of the
/// engine's time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally([u64; OUTCOMES.len()]);

impl Tally {
    /// Counts one action.
    pub fn add(&mut self, handled: &Handled) {
        let i = match handled {
            Handled::Applied { .. } => 0,
            Handled::Rejected { .. } => 1,
            Handled::Duplicate { .. } => DUPLICATE,
            Handled::AlreadyIncluded { .. } => 3,
            Handled::DeadLetter { .. } => 4,
        };
        self.0[i] += 1;
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (n, m) in self.0.iter_mut().zip(other.0) {
            *n += m;
        }
    }
}

/// Everything the engine counts; clones count into the same series.
#[derive(Clone)]
pub struct EngineMetrics {
    /// Records per handled batch.
    pub batch_size: Histogram,
    /// Handling a batch and producing its outputs.
    pub apply: Histogram,
    /// Ending a transaction: its outputs acknowledged, the offsets sent,
    /// the commit.
    pub commit: Histogram,
    /// Age of each action when the engine handles it: now minus the
    /// record's Kafka timestamp (Kafka Streams' `record-e2e-latency`).
    pub record_age: Histogram,
    /// Transactions by outcome (`committed`, `aborted`).
    pub transactions: Family<OutcomeLabels, Counter>,
    /// Actions by outcome (`applied`, `rejected`, `duplicate`,
    /// `already_included`, `dead_letter`).
    pub actions: Family<OutcomeLabels, Counter>,
    /// Actions the rules rejected, by code.
    pub rejections: Family<CodeLabels, Counter>,
    /// Action ids seen before: refused, nothing changed.
    pub duplicates: Counter,
    /// Records sent to the dead-letter topic.
    pub dead_letters: Counter,
    /// The `actions` consumer's lag.
    pub lag: ConsumerLag,
    /// Times the engine started again in place with new Kafka clients.
    pub restarts: Counter,
}

impl EngineMetrics {
    /// The engine's metrics in `registry` (registered the first time).
    pub fn register(registry: &Registry) -> EngineMetrics {
        // `once` does not nest: the shared lag first.
        let lag = registry.consumer_lag();
        registry.once("engine", |r| {
            let m = EngineMetrics {
                batch_size: ops::metrics::size_histogram(),
                apply: ops::metrics::seconds_histogram(),
                commit: ops::metrics::seconds_histogram(),
                record_age: ops::metrics::seconds_histogram(),
                transactions: Family::default(),
                actions: Family::default(),
                rejections: Family::default(),
                duplicates: Counter::default(),
                dead_letters: Counter::default(),
                lag,
                restarts: Counter::default(),
            };
            r.register(
                "engine_batch_size",
                "Records per batch the engine handled",
                m.batch_size.clone(),
            );
            r.register_with_unit(
                "engine_apply",
                "Handling a batch: the rules and producing the outputs",
                Unit::Seconds,
                m.apply.clone(),
            );
            r.register_with_unit(
                "engine_commit",
                "Ending a transaction: its outputs acknowledged, the offsets sent, the commit",
                Unit::Seconds,
                m.commit.clone(),
            );
            r.register_with_unit(
                "engine_record_age",
                "Age of each action when the engine handles it (now minus its Kafka timestamp)",
                Unit::Seconds,
                m.record_age.clone(),
            );
            r.register(
                "engine_transactions",
                "Transactions ended, by outcome",
                m.transactions.clone(),
            );
            r.register(
                "engine_actions",
                "Actions handled, by outcome",
                m.actions.clone(),
            );
            r.register(
                "engine_rejections",
                "Actions the rules rejected, by code",
                m.rejections.clone(),
            );
            r.register(
                "engine_duplicates",
                "Action ids seen before (nothing changed)",
                m.duplicates.clone(),
            );
            r.register(
                "engine_dead_letters",
                "Records sent to the dead-letter topic",
                m.dead_letters.clone(),
            );
            r.register(
                "engine_restarts",
                "Times the engine started again in place with new Kafka clients",
                m.restarts.clone(),
            );
            m
        })
    }

    /// Counts what became of a batch's actions ([`Tally`]).
    pub fn handled(&self, tally: &Tally) {
        for (outcome, &n) in OUTCOMES.iter().zip(&tally.0) {
            if n > 0 {
                self.actions
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc_by(n);
            }
        }
        self.duplicates.inc_by(tally.0[DUPLICATE]);
    }

    /// Counts a transaction's end.
    pub fn transaction(&self, outcome: &'static str) {
        self.transactions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
