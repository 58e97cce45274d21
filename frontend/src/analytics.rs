//! The analytics page (`/?view=analytics`): seed 002's two reports from the
//! lake (`GET /api/analytics/{report}`) as bar charts, polled every few
//! seconds.
//!
//! The charts are SVG strings built by [`bar_chart_svg`] (plain functions,
//! tested on native below) and set as `inner_html`, like the item pictures.
//! Unlike those, the labels come from players (`Host` is whatever the
//! request said), so every label is escaped ([`escape`]).

use std::time::Duration;

use leptos::prelude::*;
use serde::Deserialize;

/// How often the page asks for fresh reports.
pub const POLL: Duration = Duration::from_secs(3);
/// Bars drawn per chart (the largest; the rest are summed in the caption).
pub const MAX_BARS: usize = 12;

/// A report as `GET /api/analytics/{report}` answers it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ReportView {
    pub report: String,
    pub columns: Vec<String>,
    /// `[key, count]`, most first.
    pub rows: Vec<(String, u64)>,
    pub events: u64,
    pub refreshed_at_ms: i64,
    /// The last refresh failed (the rows are the last good ones).
    #[serde(default)]
    pub error: Option<String>,
}

/// What a chart shows while it has no report.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Loading,
    /// No lake behind this game (404 on the route).
    NoLake,
    /// The lake is being counted for the first time (503).
    Counting,
    /// The request failed; the last good report (if any) stays drawn.
    Failed(String),
    Ready(ReportView),
}

impl Status {
    /// The status an HTTP answer gives.
    pub fn from_answer(status: u16, body: &str) -> Status {
        match status {
            200 => serde_json::from_str(body)
                .map(Status::Ready)
                .unwrap_or_else(|e| Status::Failed(format!("unreadable report: {e}"))),
            404 => Status::NoLake,
            503 => Status::Counting,
            s => Status::Failed(format!("the server answered {s}")),
        }
    }

    /// Words for people when there is nothing to draw.
    pub fn words(&self) -> Option<String> {
        match self {
            Status::Loading => Some("Loading…".into()),
            Status::NoLake => Some(
                "This game keeps no lake: start it with `make run` or LAKE_DIR=<folder>.".into(),
            ),
            Status::Counting => Some("Counting the lake for the first time…".into()),
            Status::Failed(why) => Some(format!("Could not load the report: {why}")),
            Status::Ready(r) if r.rows.is_empty() => {
                Some("No events in the lake yet: play a little, they arrive within seconds.".into())
            }
            Status::Ready(_) => None,
        }
    }
}

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Cuts a label to `max` characters (an ellipsis marks the cut).
fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_string();
    }
    let mut s: String = label.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// One bar of a chart, laid out: its label, value and width in viewBox units.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: u64,
    pub width: f64,
}

/// Width of the bars' area in the chart's viewBox.
const BAR_AREA: f64 = 240.0;

/// The bars of `rows` (the largest `MAX_BARS`), scaled to the largest value;
/// a value above 0 always gets a visible bar.
pub fn layout(rows: &[(String, u64)]) -> Vec<Bar> {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    rows.iter()
        .take(MAX_BARS)
        .map(|(label, value)| Bar {
            label: label.clone(),
            value: *value,
            width: if *value == 0 {
                0.0
            } else {
                (*value as f64 / max * BAR_AREA).max(2.0)
            },
        })
        .collect()
}

/// A horizontal bar chart: label, bar, value per row.
pub fn bar_chart_svg(title: &str, rows: &[(String, u64)]) -> String {
    const ROW: f64 = 26.0;
    const LABEL: f64 = 150.0;
    let bars = layout(rows);
    let height = ROW * bars.len().max(1) as f64 + 4.0;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {height}" width="100%" role="img" aria-label="{t}" preserveAspectRatio="xMinYMin meet"><title>{t}</title>"#,
        w = LABEL + BAR_AREA + 70.0,
        t = escape(title),
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = i as f64 * ROW + 2.0;
        let label = escape(&shorten(&bar.label, 22));
        svg.push_str(&format!(
            concat!(
                r#"<g data-test="bar" data-label="{full}" data-value="{v}">"#,
                r#"<text x="{lx}" y="{ty}" text-anchor="end" font-size="12" fill="currentColor">{label}</text>"#,
                r#"<rect x="{bx}" y="{y}" width="{width:.1}" height="{h}" rx="3" style="fill: var(--focus)"/>"#,
                r#"<text x="{vx:.1}" y="{ty}" font-size="12" fill="currentColor">{v}</text></g>"#
            ),
            full = escape(&bar.label),
            v = bar.value,
            lx = LABEL - 6.0,
            ty = y + 15.0,
            bx = LABEL,
            h = ROW - 8.0,
            width = bar.width,
            vx = LABEL + bar.width + 6.0,
            label = label,
            y = y,
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Whether a query string (`?a=b&view=analytics`) asks for this page.
pub fn wants_analytics(search: &str) -> bool {
    shared::Page::of("/", search) == shared::Page::Analytics
}

async fn fetch(path: &str) -> Status {
    match crate::net::request("GET", path, None, None).await {
        Ok(answer) => Status::from_answer(answer.status, &answer.body),
        Err(e) => Status::Failed(e),
    }
}

/// A failed poll keeps the last good report drawn.
fn merge(old: &Status, new: Status) -> Status {
    match (old, new) {
        (Status::Ready(r), Status::Failed(_)) => Status::Ready(r.clone()),
        (_, new) => new,
    }
}

/// The analytics page: events by type and players by `Host`, live.
#[component]
pub fn AnalyticsPage() -> impl IntoView {
    let by_type = RwSignal::new(Status::Loading);
    let by_host = RwSignal::new(Status::Loading);
    let poll = move || {
        leptos::task::spawn_local(async move {
            let t = fetch("/api/analytics/by_event_type").await;
            by_type.update(|s| *s = merge(s, t));
            let h = fetch(&format!("/api/analytics/by_host?limit={MAX_BARS}")).await;
            by_host.update(|s| *s = merge(s, h));
        });
    };
    poll();
    if let Ok(handle) = set_interval_with_handle(poll, POLL) {
        on_cleanup(move || handle.clear());
    }
    let summary = move || match by_type.get() {
        Status::Ready(r) => {
            let when =
                js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(r.refreshed_at_ms as f64))
                    .to_locale_time_string("en-GB");
            let mut s = format!("{} events in the lake, counted at {when}.", r.events);
            if let Some(e) = r.error {
                s.push_str(&format!(
                    " The last count failed ({e}); showing the one before."
                ));
            }
            s
        }
        _ => String::new(),
    };
    view! {
        <header class="top">
            <h1>"Build a Nation: analytics"</h1>
            <a class="nav-link" href="/" data-test="to-game">"Back to the game"</a>
        </header>
        <main class="analytics" data-test="analytics">
            <p class="summary" data-test="analytics-summary" role="status">{summary}</p>
            <Chart
                title="Events by type"
                caption="Every action in the lake, by event_type (seed 002's first report)"
                test="chart-by_event_type"
                status=by_type
            />
            <Chart
                title="Players by Host"
                caption="Events per Host header, the largest first (seed 002's second report)"
                test="chart-by_host"
                status=by_host
            />
        </main>
    }
}

/// One report as a bar chart, or words saying why there is none.
#[component]
pub fn Chart(
    /// The chart's heading.
    title: &'static str,
    /// What the chart counts, under it.
    caption: &'static str,
    /// Its `data-test` attribute.
    test: &'static str,
    /// The report, as last fetched.
    status: RwSignal<Status>,
) -> impl IntoView {
    let words = move || status.with(Status::words);
    let svg = move || match status.get() {
        Status::Ready(r) if !r.rows.is_empty() => bar_chart_svg(title, &r.rows),
        _ => String::new(),
    };
    view! {
        <section class="card chart-card" data-test=test>
            <h2>{title}</h2>
            <figure>
                <div inner_html=svg></div>
                <figcaption>{caption}</figcaption>
            </figure>
            {move || words().map(|w| view! { <p class="empty" data-test="chart-words">{w}</p> })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn bars_scale_to_the_largest_and_stay_visible() {
        let bars = layout(&rows(&[("a", 40), ("b", 20), ("c", 0), ("d", 1)]));
        assert_eq!(bars[0].width, BAR_AREA);
        assert_eq!(bars[1].width, BAR_AREA / 2.0);
        assert_eq!(bars[2].width, 0.0);
        assert_eq!(bars[3].width, 6.0, "40:1 is 6 units wide");
        let many: Vec<_> = (0..30).map(|i| (format!("h{i}"), 30 - i)).collect();
        assert_eq!(layout(&many).len(), MAX_BARS);
    }

    #[test]
    fn player_chosen_labels_are_escaped() {
        let svg = bar_chart_svg("Hosts", &rows(&[("<script>x</script>\"'&", 3)]));
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains("&quot;&#39;&amp;"), "{svg}");
        assert_eq!(svg.matches("data-test=\"bar\"").count(), 1);
    }

    #[test]
    fn long_labels_are_cut_with_an_ellipsis() {
        assert_eq!(shorten("short", 22), "short");
        let cut = shorten("a-very-long-host-name.example.com", 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn answers_become_statuses() {
        let body = r#"{"report":"by_host","columns":["Host","number_of_player"],
            "rows":[["a",2]],"events":2,"refreshed_at_ms":5,"error":null}"#;
        match Status::from_answer(200, body) {
            Status::Ready(r) => assert_eq!(r.rows, rows(&[("a", 2)])),
            s => panic!("{s:?}"),
        }
        assert_eq!(Status::from_answer(404, "{}"), Status::NoLake);
        assert_eq!(Status::from_answer(503, "{}"), Status::Counting);
        assert!(matches!(Status::from_answer(500, ""), Status::Failed(_)));
        assert!(matches!(
            Status::from_answer(200, "nope"),
            Status::Failed(_)
        ));
    }

    #[test]
    fn a_failed_poll_keeps_the_last_report() {
        let ready = Status::Ready(ReportView::default());
        assert_eq!(merge(&ready, Status::Failed("x".into())), ready);
        assert_eq!(merge(&ready, Status::Counting), Status::Counting);
        assert_eq!(
            merge(&Status::Loading, Status::Failed("x".into())),
            Status::Failed("x".into())
        );
    }

    #[test]
    fn the_page_is_chosen_by_the_query() {
        assert!(wants_analytics("?view=analytics"));
        assert!(wants_analytics("?game=3&view=analytics"));
        assert!(!wants_analytics("?game=3"));
        assert!(!wants_analytics(""));
    }
}
