//! The operator page (`/admin`): live charts of actions per second,
//! end-to-end p99, consumer lag per role, WebSocket clients and refusals,
//! and the abuse table, fed every 2 s by the bridge's admin routes
//! (`/api/admin/summary`, `/api/admin/abuse`) with the admin token.
//!
//! [`History`] is the plain part (the samples kept and the series drawn
//! from them), tested on native; [`AdminPage`] and [`Chart`] only draw it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use leptos::prelude::*;
use shared::admin::{AbuseReport, Summary};

/// Samples kept (2 s apart: four minutes).
pub const KEEP: usize = 120;

/// Where the page keeps the admin token between visits.
const TOKEN_KEY: &str = "build-a-nation.admin-token";

/// The summaries received, oldest first, and the series charted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    samples: VecDeque<Summary>,
}

impl History {
    /// Adds a summary, forgetting the oldest past [`KEEP`]; a summary from a
    /// restarted process (counters went back) starts the history again.
    pub fn push(&mut self, summary: Summary) {
        if let Some(last) = self.samples.back() {
            if summary.actions < last.actions || summary.at_ms <= last.at_ms {
                self.samples.clear();
            }
        }
        self.samples.push_back(summary);
        while self.samples.len() > KEEP {
            self.samples.pop_front();
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&Summary, &Summary)> {
        self.samples.iter().zip(self.samples.iter().skip(1))
    }

    /// Actions acknowledged per second, per interval.
    pub fn actions_per_s(&self) -> Vec<f64> {
        self.pairs()
            .map(|(a, b)| b.rate(a, |s| s.actions))
            .collect()
    }

    /// End-to-end (action -> update) p99 per interval, in ms (0 when
    /// nothing was observed in it).
    pub fn e2e_p99_ms(&self) -> Vec<f64> {
        self.pairs()
            .map(|(a, b)| b.e2e_quantile_since(a, 0.99).map_or(0.0, |s| s * 1000.0))
            .collect()
    }

    /// Refusals and rule rejections per second, per interval.
    pub fn refused_per_s(&self) -> Vec<f64> {
        self.pairs()
            .map(|(a, b)| b.rate(a, Summary::refused_total))
            .collect()
    }

    /// Open WebSockets at each sample.
    pub fn ws_clients(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.ws_clients).collect()
    }

    /// Lag per consumer (role) at each sample.
    pub fn lag(&self) -> BTreeMap<String, Vec<f64>> {
        let mut series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for consumer in self.samples.iter().flat_map(|s| s.lag.keys()) {
            series.entry(consumer.clone()).or_default();
        }
        for (consumer, values) in series.iter_mut() {
            *values = self
                .samples
                .iter()
                .map(|s| s.lag.get(consumer).copied().unwrap_or(0.0))
                .collect();
        }
        series
    }

    /// The latest summary.
    pub fn last(&self) -> Option<&Summary> {
        self.samples.back()
    }
}

/// An SVG polyline's points for `values` in a `width` x `height` box, the
/// top at `max` (at least 1).
pub fn polyline(values: &[f64], width: f64, height: f64, max: f64) -> String {
    let max = max.max(1.0);
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = height - (v.max(0.0) / max).min(1.0) * height;
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn largest(series: &[Vec<f64>]) -> f64 {
    series.iter().flatten().copied().fold(0.0_f64, f64::max)
}

/// Colours of a chart's lines, in turn.
const COLOURS: [&str; 6] = [
    "#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#4a5568",
];

/// A line chart of one or more named series.
#[component]
pub fn Chart(
    /// Above the chart.
    title: &'static str,
    /// The unit shown beside the latest value.
    unit: &'static str,
    /// The named series to draw.
    series: Signal<Vec<(String, Vec<f64>)>>,
) -> impl IntoView {
    let (w, h) = (320.0, 90.0);
    view! {
        <figure class="chart" data-test=format!("chart-{title}")>
            <figcaption>
                {title}
                " "
                {move || {
                    series
                        .get()
                        .iter()
                        .map(|(name, v)| {
                            let last = v.last().copied().unwrap_or(0.0);
                            if name.is_empty() {
                                format!("{last:.1} {unit}")
                            } else {
                                format!("{name}: {last:.0} {unit}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" · ")
                }}
            </figcaption>
            <svg
                viewBox=format!("0 0 {w} {h}")
                width="320"
                height="90"
                role="img"
                aria-label=title
            >
                <rect x="0" y="0" width=w height=h fill="none" stroke="#ccc" />
                {move || {
                    let all = series.get();
                    let max = largest(&all.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
                    all.into_iter()
                        .enumerate()
                        .map(|(i, (_, values))| {
                            view! {
                                <polyline
                                    fill="none"
                                    stroke=COLOURS[i % COLOURS.len()]
                                    stroke-width="2"
                                    points=polyline(&values, w, h, max)
                                />
                            }
                        })
                        .collect_view()
                }}
            </svg>
        </figure>
    }
}

fn load_token() -> String {
    web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item(TOKEN_KEY).ok().flatten())
        .unwrap_or_default()
}

fn save_token(token: &str) {
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.set_item(TOKEN_KEY, token);
    }
}

/// The operator page.
#[component]
pub fn AdminPage() -> impl IntoView {
    let token = RwSignal::new(load_token());
    let history = RwSignal::new(History::default());
    let abuse = RwSignal::new(AbuseReport::default());
    let status = RwSignal::new(String::from("enter the admin token"));
    let poll = move || {
        let t = token.get_untracked();
        if t.is_empty() {
            return;
        }
        leptos::task::spawn_local(async move {
            match crate::net::request("GET", "/api/admin/summary", Some(&t), None).await {
                Ok(a) if a.status == 200 => match serde_json::from_str::<Summary>(&a.body) {
                    Ok(summary) => {
                        history.update(|h| h.push(summary));
                        status.set("live".into());
                    }
                    Err(e) => status.set(format!("unreadable summary: {e}")),
                },
                Ok(a) if a.status == 401 || a.status == 403 => {
                    status.set("the admin token was refused".into())
                }
                Ok(a) => status.set(format!("summary: HTTP {}", a.status)),
                Err(e) => status.set(format!("offline: {e}")),
            }
            if let Ok(a) =
                crate::net::request("GET", "/api/admin/abuse?limit=10", Some(&t), None).await
            {
                if a.status == 200 {
                    if let Ok(report) = serde_json::from_str::<AbuseReport>(&a.body) {
                        abuse.set(report);
                    }
                }
            }
        });
    };
    poll();
    set_interval(poll, Duration::from_secs(2));
    let one = |f: fn(&History) -> Vec<f64>| {
        Signal::derive(move || vec![(String::new(), history.with(f))])
    };
    let lag = Signal::derive(move || history.with(|h| h.lag().into_iter().collect::<Vec<_>>()));
    view! {
        <header class="top">
            <h1>"Build a Nation: operator"</h1>
            <p role="status" data-test="admin-status">{move || status.get()}</p>
        </header>
        <main class="admin">
            <label>
                "Admin token "
                <input
                    type="password"
                    data-test="admin-token"
                    aria-label="Admin token"
                    prop:value=move || token.get()
                    on:change=move |ev| {
                        let value = event_target_value(&ev);
                        save_token(&value);
                        token.set(value);
                        history.set(History::default());
                        poll();
                    }
                />
            </label>
            <section class="charts">
                <Chart title="actions/s" unit="/s" series=one(History::actions_per_s) />
                <Chart title="action → update p99" unit="ms" series=one(History::e2e_p99_ms) />
                <Chart title="consumer lag" unit="records" series=lag />
                <Chart title="WebSocket clients" unit="" series=one(History::ws_clients) />
                <Chart title="refused + rejected/s" unit="/s" series=one(History::refused_per_s) />
            </section>
            <section class="abuse" aria-label="Abuse table">
                <h2>"Worst sources of refused requests"</h2>
                <p>{move || format!("{} refusals read from the logs topic", abuse.get().events)}</p>
                <table data-test="abuse-clients">
                    <thead>
                        <tr><th>"client address"</th><th>"refused"</th><th>"codes"</th></tr>
                    </thead>
                    <tbody>
                        {move || abuse.get().clients.into_iter().map(row).collect_view()}
                    </tbody>
                </table>
                <table data-test="abuse-hosts">
                    <thead>
                        <tr><th>"Host"</th><th>"refused"</th><th>"codes"</th></tr>
                    </thead>
                    <tbody>
                        {move || abuse.get().hosts.into_iter().map(row).collect_view()}
                    </tbody>
                </table>
            </section>
        </main>
    }
}

fn row(source: shared::admin::SourceStats) -> impl IntoView {
    let codes = source
        .codes
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    view! {
        <tr>
            <td>{source.source}</td>
            <td>{source.refused}</td>
            <td>{codes}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(at_ms: u64, actions: f64) -> Summary {
        Summary {
            at_ms,
            actions,
            ..Summary::default()
        }
    }

    #[test]
    fn actions_per_second_from_successive_summaries() {
        let mut h = History::default();
        h.push(summary(0, 0.0));
        h.push(summary(2_000, 200.0));
        h.push(summary(4_000, 600.0));
        assert_eq!(h.actions_per_s(), vec![100.0, 200.0]);
    }

    #[test]
    fn a_restarted_process_starts_the_history_again() {
        let mut h = History::default();
        h.push(summary(0, 500.0));
        h.push(summary(2_000, 10.0));
        assert!(h.actions_per_s().is_empty());
        assert_eq!(h.last().map(|s| s.actions), Some(10.0));
    }

    #[test]
    fn history_is_bounded() {
        let mut h = History::default();
        for i in 0..(KEEP as u64 + 10) {
            h.push(summary(i * 1000, i as f64));
        }
        assert_eq!(h.ws_clients().len(), KEEP);
    }

    #[test]
    fn polyline_scales_into_the_box() {
        assert_eq!(
            polyline(&[0.0, 5.0, 10.0], 100.0, 50.0, 10.0),
            "0.0,50.0 50.0,25.0 100.0,0.0"
        );
    }
}
