//! The comparison as a bar chart (SVG): one panel per scenario's headline metric, one
//! bar per server, absolute medians written beside the bars. `summary --chart` writes it
//! and BENCHMARKS.md embeds it; people read bars faster than a table.

use svg::node::element::{Group, Rectangle, Text};
use svg::Document;

use crate::summary::{median, results, scenarios, Better, Scenario};

/// Servers in chart order, with their bar colours.
const SERIES: [(&str, &str); 3] = [
    ("herald", "#2b6cb0"),
    ("reference", "#a0aec0"),
    ("bun", "#dd6b20"),
];

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 90.0;
const BAR_MAX: f64 = 520.0;
const BAR_H: f64 = 16.0;
const GAP: f64 = 4.0;
const TITLE_H: f64 = 22.0;
const PANEL_GAP: f64 = 14.0;

/// The metric each scenario is judged by in the chart.
struct Headline {
    label: &'static str,
    pointer: &'static str,
    better: Better,
}

fn headlines(s: &Scenario<'_>) -> Vec<Headline> {
    let h = |label, pointer, better| Headline {
        label,
        pointer,
        better,
    };
    match (s.kind, s.rated) {
        ("fanout", true) => vec![
            h("latency p99 (ms)", "/results/latency_ms/p99", Better::Lower),
            h("hub CPU (%)", "/results/hub_cpu_pct", Better::Lower),
        ],
        ("fanout", false) => vec![
            h("deliveries/s", "/results/deliveries_per_s", Better::Higher),
            h("latency p99 (ms)", "/results/latency_ms/p99", Better::Lower),
        ],
        ("conns", _) => vec![h(
            "RSS per idle connection (KiB)",
            "/results/rss_per_conn_idle_kib",
            Better::Lower,
        )],
        ("ingest", _) => vec![h(
            "notifications accepted/s",
            "/results/notifications_per_s",
            Better::Higher,
        )],
        _ => Vec::new(),
    }
}

fn text(x: f64, y: f64, content: impl Into<String>) -> Text {
    Text::new(content)
        .set("x", x)
        .set("y", y)
        .set("font-family", "sans-serif")
        .set("font-size", 12)
}

/// The chart for a results document (as written by bench/run.sh).
pub fn render(doc: &serde_json::Value) -> String {
    let empty = Vec::new();
    let runs = doc["runs"].as_array().unwrap_or(&empty);
    let servers: Vec<(&str, &str)> = SERIES
        .iter()
        .copied()
        .filter(|(name, _)| runs.iter().any(|r| r["target"] == *name))
        .collect();

    let mut body = Group::new();
    let mut y = 34.0;
    body = body.add(
        text(
            0.0,
            16.0,
            format!(
                "herald-bench {} ({} mode): medians; each panel says whether longer is better",
                doc["timestamp"].as_str().unwrap_or("?"),
                doc["mode"].as_str().unwrap_or("?")
            ),
        )
        .set("font-weight", "bold"),
    );
    for scenario in scenarios(runs) {
        for headline in headlines(&scenario) {
            let values: Vec<Option<f64>> = servers
                .iter()
                .map(|(name, _)| median(&results(runs, scenario.name, name), headline.pointer).0)
                .collect();
            let top = values.iter().flatten().copied().fold(0.0, f64::max);
            let hint = match headline.better {
                Better::Higher => "higher is better",
                Better::Lower => "lower is better",
                Better::Info => "",
            };
            body = body.add(
                text(
                    0.0,
                    y + 14.0,
                    format!("{}: {} ({hint})", scenario.title, headline.label),
                )
                .set("font-weight", "bold"),
            );
            y += TITLE_H;
            for ((name, colour), value) in servers.iter().zip(&values) {
                body = body.add(text(0.0, y + BAR_H - 4.0, *name));
                let (width, label) = match value {
                    Some(v) if top > 0.0 => (BAR_MAX * v / top, format_value(*v)),
                    Some(v) => (0.0, format_value(*v)),
                    None => (0.0, "no result".to_string()),
                };
                body = body
                    .add(
                        Rectangle::new()
                            .set("x", LABEL_W)
                            .set("y", y)
                            .set("width", width.max(1.0))
                            .set("height", BAR_H)
                            .set("fill", *colour),
                    )
                    .add(text(LABEL_W + width + 6.0, y + BAR_H - 4.0, label));
                y += BAR_H + GAP;
            }
            y += PANEL_GAP;
        }
    }
    Document::new()
        .set("xmlns", "http://www.w3.org/2000/svg")
        .set("width", WIDTH)
        .set("height", y)
        .set("viewBox", (0.0, 0.0, WIDTH, y))
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(body.set("transform", "translate(10, 0)"))
        .to_string()
}

/// `1,234,567` for large values, two decimals for small ones.
fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        crate::report::thousands(v.round().max(0.0) as u64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn run(target: &str, rate: f64) -> serde_json::Value {
        json!({"name": "ingest-x", "title": "ingest x", "target": target, "rep": 1,
               "result": {"scenario": "ingest", "params": {},
                          "results": {"notifications_per_s": rate}}})
    }

    #[test]
    fn one_bar_per_server_scaled_to_the_best_with_its_value() {
        let doc = json!({"timestamp": "T", "mode": "quick",
                         "runs": [run("herald", 50_000.0), run("bun", 100_000.0)]});
        let svg = super::render(&doc);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("ingest x: notifications accepted/s (higher is better)"));
        assert!(svg.contains("50,000") && svg.contains("100,000"), "{svg}");
        // herald's bar is half of Bun's, which is the full width; no reference bar.
        assert!(
            svg.contains(r#"width="260""#) && svg.contains(r#"width="520""#),
            "{svg}"
        );
        assert!(!svg.contains(">reference<"), "{svg}");
    }
}
