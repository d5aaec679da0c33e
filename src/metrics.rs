//! Prometheus metrics: what the daemon counts, encoded for `GET /metrics`.
//!
//! The daemon reports each pass and each swap; the API only reads. Label
//! values are kept to small fixed sets ([`trigger_label`], the op outcomes)
//! so a busy host cannot grow the series count without bound — a Docker
//! event names a container, and a container name must never become a label.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::summary::{Kind, Summary};
use crate::swap::journal::OpOutcome;
use crate::trigger::Trigger;

/// The `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics text,
/// which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every trigger label value, pre-created so each series exists from zero.
const TRIGGERS: [&str; 6] = ["timer", "retry", "file", "docker", "api", "hangup"];

/// Every op outcome the daemon reports, pre-created likewise.
const OUTCOMES: [&str; 4] = ["committed", "rolled_back", "failed", "unchanged"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// Webhook delivery results, pre-created likewise.
const DELIVERY_RESULTS: [&str; 2] = ["delivered", "failed"];

/// The controller's metrics. Cheap to share behind an `Arc`; every method
/// takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    passes: Family<TriggerLabels, Counter>,
    pass_duration: Histogram,
    upgrades: Family<OutcomeLabels, Counter>,
    rollbacks: Counter,
    op_duration: Histogram,
    last_success: Gauge<f64, AtomicU64>,
    failures: Family<KindLabels, Counter>,
    last_pass_failures: Gauge,
    pass_errors: Counter,
    webhook: Family<ResultLabels, Counter>,
    webhook_pending: Gauge,
    git_looks: Family<ResultLabels, Counter>,
    git_commit_time: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding every `container_upgrader_*` family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("container_upgrader");
        let passes = Family::<TriggerLabels, Counter>::default();
        // Passes take milliseconds to minutes (a pass may wait on pulls and
        // health gates); swaps take seconds to many minutes.
        let pass_duration = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let upgrades = Family::<OutcomeLabels, Counter>::default();
        let rollbacks = Counter::default();
        let op_duration = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register("passes", "Reconcile passes run, by what triggered them", passes.clone());
        registry.register_with_unit(
            "pass_duration",
            "How long reconcile passes took",
            Unit::Seconds,
            pass_duration.clone(),
        );
        registry.register("upgrades", "Swap operations finished, by outcome", upgrades.clone());
        registry.register("rollbacks", "Swaps rolled back to the old container", rollbacks.clone());
        registry.register_with_unit(
            "op_duration",
            "How long swap operations took, whatever their outcome",
            Unit::Seconds,
            op_duration.clone(),
        );
        registry.register_with_unit(
            "last_success_timestamp",
            "Unix time of the last pass that ended without error",
            Unit::Seconds,
            last_success.clone(),
        );
        let failures = Family::<KindLabels, Counter>::default();
        let last_pass_failures = Gauge::default();
        let pass_errors = Counter::default();
        let webhook = Family::<ResultLabels, Counter>::default();
        let webhook_pending = Gauge::default();
        registry.register(
            "failures",
            "Targets a pass could not bring to their desired image, by kind (a held target counts every pass)",
            failures.clone(),
        );
        registry.register(
            "last_pass_failures",
            "Failures named by the last pass (0: everything as the manifest says)",
            last_pass_failures.clone(),
        );
        registry.register(
            "pass_errors",
            "Passes that could not run at all (engine or journal unreachable, no valid manifest)",
            pass_errors.clone(),
        );
        registry.register("webhook_deliveries", "Webhook POST attempts, by result", webhook.clone());
        registry.register(
            "webhook_pending",
            "Op events in the outbox not yet delivered",
            webhook_pending.clone(),
        );
        let git_looks = Family::<ResultLabels, Counter>::default();
        let git_commit_time = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "git_looks",
            "Looks at the Git source (run --git), by result: unchanged, applied, refused (the commit's manifest), failed (the repository)",
            git_looks.clone(),
        );
        registry.register_with_unit(
            "git_commit_timestamp",
            "Author time (Unix) of the commit the manifest file was last written from",
            Unit::Seconds,
            git_commit_time.clone(),
        );
        // Create the known series now so they read 0 rather than being
        // absent (`rate()` and alerts on absence both need the zero).
        for trigger in TRIGGERS {
            let _ = passes.get_or_create(&TriggerLabels { trigger: trigger.to_string() });
        }
        for outcome in OUTCOMES {
            let _ = upgrades.get_or_create(&OutcomeLabels { outcome: outcome.to_string() });
        }
        for kind in Kind::ALL {
            let _ = failures.get_or_create(&KindLabels { kind: kind.name().to_string() });
        }
        for result in DELIVERY_RESULTS {
            let _ = webhook.get_or_create(&ResultLabels { result: result.to_string() });
        }
        Self {
            registry,
            passes,
            pass_duration,
            upgrades,
            rollbacks,
            op_duration,
            last_success,
            failures,
            last_pass_failures,
            pass_errors,
            webhook,
            webhook_pending,
            git_looks,
            git_commit_time,
        }
    }

    /// A look at the Git source ended with `result` (`unchanged`,
    /// `applied`, `refused` or `failed`).
    pub fn git_look(&self, result: &str) {
        self.git_looks.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    /// The manifest file now comes from a commit authored at `rfc3339`.
    pub fn set_git_commit_time(&self, rfc3339: &str) {
        if let Ok(at) = humantime::parse_rfc3339(rfc3339) {
            if let Ok(since) = at.duration_since(std::time::UNIX_EPOCH) {
                self.git_commit_time.set(since.as_secs_f64());
            }
        }
    }

    /// A pass ran: counts each failure it named by kind, and sets the
    /// last-pass gauge (and the last success time when nothing failed).
    pub fn pass_summary(&self, summary: &Summary, now_unix: f64) {
        for f in &summary.failures {
            self.failures.get_or_create(&KindLabels { kind: f.kind.name().to_string() }).inc();
        }
        self.last_pass_failures.set(i64::try_from(summary.failures.len()).unwrap_or(i64::MAX));
        if summary.is_clean() {
            self.set_last_success(now_unix);
        }
    }

    /// A pass could not run at all; it counts as one failure in the
    /// last-pass gauge.
    pub fn pass_failed(&self) {
        self.pass_errors.inc();
        self.last_pass_failures.set(1);
    }

    /// A webhook POST was answered with success (`true`) or not.
    pub fn webhook_attempt(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "failed" };
        self.webhook.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    /// Events waiting in the outbox.
    pub fn set_webhook_pending(&self, pending: usize) {
        self.webhook_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A reconcile pass ended. `trigger` should come from [`trigger_label`].
    pub fn pass_done(&self, trigger: &str, duration: Duration) {
        self.passes.get_or_create(&TriggerLabels { trigger: trigger.to_string() }).inc();
        self.pass_duration.observe(duration.as_secs_f64());
    }

    /// A swap operation ended: `outcome` is `committed`, `rolled_back`,
    /// `failed` or `unchanged`. `rolled_back` also counts in
    /// `container_upgrader_rollbacks_total`.
    pub fn op_done(&self, outcome: OpOutcome, duration: Duration) {
        self.upgrades.get_or_create(&OutcomeLabels { outcome: outcome.name().to_string() }).inc();
        if outcome == OpOutcome::RolledBack {
            self.rollbacks.inc();
        }
        self.op_duration.observe(duration.as_secs_f64());
    }

    /// The last pass that ended without error ended at this Unix time.
    pub fn set_last_success(&self, unix_seconds: f64) {
        self.last_success.set(unix_seconds);
    }

    /// Every family in the OpenMetrics text format (serve it with
    /// [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in
        // a metric's encoder, and a partial scrape is better than none.
        if let Err(e) = text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The bounded label value for a trigger: `timer`, `retry`, `file`,
/// `docker`, `api` or `hangup` (a Docker event's container name is dropped on purpose).
pub fn trigger_label(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Timer => "timer",
        Trigger::Retry => "retry",
        Trigger::File => "file",
        Trigger::Docker(_) => "docker",
        Trigger::Api => "api",
        Trigger::Hangup => "hangup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
    }

    #[test]
    fn fresh_metrics_expose_every_family_at_zero() {
        let text = Metrics::new().encode();
        for family in [
            "container_upgrader_passes_total{trigger=\"timer\"} 0",
            "container_upgrader_upgrades_total{outcome=\"rolled_back\"} 0",
            "container_upgrader_rollbacks_total 0",
            "container_upgrader_op_duration_seconds_count 0",
            "container_upgrader_pass_duration_seconds_count 0",
            "container_upgrader_last_success_timestamp_seconds 0",
        ] {
            line(&text, family);
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn pass_and_op_reports_move_their_series() {
        let m = Metrics::new();
        m.pass_done(trigger_label(&Trigger::Docker("web".into())), Duration::from_millis(30));
        m.pass_done("api", Duration::from_secs(2));
        m.op_done(OpOutcome::Committed, Duration::from_secs(3));
        m.op_done(OpOutcome::RolledBack, Duration::from_secs(70));
        m.set_last_success(1_700_000_000.5);
        let text = m.encode();
        line(&text, "container_upgrader_passes_total{trigger=\"docker\"} 1");
        line(&text, "container_upgrader_passes_total{trigger=\"api\"} 1");
        line(&text, "container_upgrader_upgrades_total{outcome=\"committed\"} 1");
        line(&text, "container_upgrader_upgrades_total{outcome=\"rolled_back\"} 1");
        line(&text, "container_upgrader_rollbacks_total 1");
        line(&text, "container_upgrader_op_duration_seconds_count 2");
        line(&text, "container_upgrader_op_duration_seconds_sum 73");
        line(&text, "container_upgrader_last_success_timestamp_seconds 1700000000.5");
        assert!(!text.contains("\"web\""), "container names must not become labels:\n{text}");
    }

    #[test]
    fn a_pass_with_failures_counts_them_by_kind_and_is_not_a_success() {
        use crate::summary::Failure;
        let m = Metrics::new();
        let failure = |kind| Failure {
            target: "t".into(),
            container: None,
            kind,
            reason: String::new(),
            retry_at: None,
        };
        let summary =
            Summary { failures: vec![failure(Kind::Error), failure(Kind::Held)], ..Summary::default() };
        m.pass_summary(&summary, 1_700_000_000.0);
        let text = m.encode();
        line(&text, "container_upgrader_failures_total{kind=\"error\"} 1");
        line(&text, "container_upgrader_failures_total{kind=\"held\"} 1");
        line(&text, "container_upgrader_failures_total{kind=\"refused\"} 0");
        line(&text, "container_upgrader_last_pass_failures 2");
        line(&text, "container_upgrader_last_success_timestamp_seconds 0");
        m.pass_summary(&Summary::default(), 1_700_000_001.0);
        m.pass_failed();
        m.webhook_attempt(false);
        m.set_webhook_pending(3);
        let text = m.encode();
        line(&text, "container_upgrader_last_success_timestamp_seconds 1700000001");
        line(&text, "container_upgrader_last_pass_failures 1");
        line(&text, "container_upgrader_pass_errors_total 1");
        line(&text, "container_upgrader_webhook_deliveries_total{result=\"failed\"} 1");
        line(&text, "container_upgrader_webhook_pending 3");
    }
}
