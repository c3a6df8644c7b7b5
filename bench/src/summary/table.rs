//! The generated table: a row per scenario and metric, a column per server, herald's
//! ratio to each other one, and the caveats that go with the numbers.

use std::fmt::Write as _;

use serde_json::Value;

use super::{median, results, scenarios, Better, Scenario, TARGETS};

struct Metric {
    label: &'static str,
    /// JSON pointer into a run's `result`.
    pointer: &'static str,
    better: Better,
    decimals: usize,
}

const fn m(label: &'static str, pointer: &'static str, better: Better, decimals: usize) -> Metric {
    Metric {
        label,
        pointer,
        better,
        decimals,
    }
}

fn metrics(scenario: &str, rated: bool) -> Vec<Metric> {
    use Better::*;
    let cores = [
        m("hub process CPU (%)", "/results/hub_cpu_pct", Info, 0),
        m("hub core busy (%)", "/results/hub_core_busy_pct", Info, 0),
        m(
            "client core busy (%)",
            "/results/client_core_busy_pct",
            Info,
            0,
        ),
    ];
    let mut list = match scenario {
        "fanout" if rated => vec![
            m("latency p50 (ms)", "/results/latency_ms/p50", Lower, 2),
            m("latency p90 (ms)", "/results/latency_ms/p90", Lower, 2),
            m("latency p99 (ms)", "/results/latency_ms/p99", Lower, 2),
            m("latency max (ms)", "/results/latency_ms/max", Lower, 2),
            m(
                "POST /notify p99 (ms)",
                "/results/publish_latency_ms/p99",
                Lower,
                2,
            ),
            m("loss", "/results/loss", Lower, 0),
        ],
        "fanout" => vec![
            m("deliveries/s", "/results/deliveries_per_s", Higher, 0),
            m("duration (s)", "/results/duration_s", Lower, 3),
            m("latency p50 (ms)", "/results/latency_ms/p50", Lower, 2),
            m("latency p99 (ms)", "/results/latency_ms/p99", Lower, 2),
            m("latency max (ms)", "/results/latency_ms/max", Lower, 2),
            m("loss", "/results/loss", Lower, 0),
        ],
        "conns" => {
            return vec![
                m(
                    "RSS per idle conn (KiB)",
                    "/results/rss_per_conn_idle_kib",
                    Lower,
                    2,
                ),
                m(
                    "RSS per conn after burst (KiB)",
                    "/results/rss_per_conn_after_burst_kib",
                    Lower,
                    2,
                ),
                m("connects/s", "/results/connects_per_s", Higher, 0),
                m("burst duration (s)", "/results/burst_s", Lower, 3),
                m(
                    "burst latency p99 (ms)",
                    "/results/burst_latency_ms/p99",
                    Lower,
                    2,
                ),
                m("burst loss", "/results/burst_loss", Lower, 0),
                m(
                    "burst hub process CPU (%)",
                    "/results/burst_hub_cpu_pct",
                    Info,
                    0,
                ),
                m(
                    "burst client core busy (%)",
                    "/results/burst_client_core_busy_pct",
                    Info,
                    0,
                ),
            ]
        }
        "ingest" => vec![
            m("requests/s", "/results/requests_per_s", Higher, 0),
            m("notifications/s", "/results/notifications_per_s", Higher, 0),
            m("latency p50 (ms)", "/results/latency_ms/p50", Lower, 2),
            m("latency p99 (ms)", "/results/latency_ms/p99", Lower, 2),
            m("latency max (ms)", "/results/latency_ms/max", Lower, 2),
            m("non-202", "/results/non_202", Lower, 0),
        ],
        _ => return Vec::new(),
    };
    list.extend(cores);
    list
}

fn fmt_num(v: Option<f64>, decimals: usize) -> String {
    match v {
        None => "–".to_string(),
        Some(v) if decimals == 0 => crate::report::thousands(v.round().max(0.0) as u64),
        Some(v) => format!("{v:.decimals$}"),
    }
}

fn fmt_spread(s: Option<f64>) -> String {
    s.map_or(String::new(), |s| format!(" ±{:.0}%", s * 100.0))
}

/// Renders the generated section: where and how the run was made, the table, then the
/// caveats about it.
pub fn render(doc: &Value) -> String {
    let empty = Vec::new();
    let runs = doc["runs"].as_array().unwrap_or(&empty);
    // herald first, then every comparison server this file has results for.
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| runs.iter().any(|r| r["target"] == *t))
        .collect();
    let mut s = header(doc, runs);
    s.push_str(&table_head(&targets));
    let mut notes = Vec::new();
    for scenario in scenarios(runs) {
        let per_target: Vec<Vec<&Value>> = targets
            .iter()
            .map(|t| results(runs, scenario.name, t))
            .collect();
        notes.extend(caveats(runs, &scenario, &targets, &per_target));
        s.push_str(&rows(&scenario, &per_target));
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\nCaveats:\n{}", notes.join("\n"));
    }
    s
}

/// The run, the machine, and what the values are.
fn header(doc: &Value, runs: &[Value]) -> String {
    let machine = &doc["machine"];
    let reps = runs
        .iter()
        .filter_map(|r| r["rep"].as_u64())
        .max()
        .unwrap_or(1);
    let mut s = format!(
        "Run `{}` ({} mode, {reps} repetition{} per server, alternating), herald `{}`.  \n\
         Machine: {}, {} cores, {} GiB RAM, Linux {}.\n\n",
        doc["timestamp"].as_str().unwrap_or("?"),
        doc["mode"].as_str().unwrap_or("?"),
        if reps == 1 { "" } else { "s" },
        doc["herald_commit"].as_str().unwrap_or("?"),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["nproc"],
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
    );
    if reps > 1 {
        s.push_str("Values are medians; ±N% is half the range over the repetitions.\n\n");
    }
    s
}

/// The table's header: a column per server, then herald's ratio to each other one.
fn table_head(targets: &[&str]) -> String {
    let others = &targets[targets.len().min(1)..];
    let mut head = String::from("| scenario | metric |");
    let mut rule = String::from("|---|---|");
    for t in targets {
        head.push_str(&format!(" {t} |"));
        rule.push_str("--:|");
    }
    for t in others {
        head.push_str(&format!(" herald/{t} |"));
        rule.push_str("--:|");
    }
    format!("{head} better |\n{rule}---|\n")
}

/// What may make `scenario`'s numbers less than they seem: other work on the machine,
/// runs that were not clean, a saturated load tool.
fn caveats(
    runs: &[Value],
    scenario: &Scenario<'_>,
    targets: &[&str],
    per_target: &[Vec<&Value>],
) -> Vec<String> {
    let (name, title) = (scenario.name, scenario.title);
    let mut notes = Vec::new();
    let (mut total, mut disturbed, mut worst, mut unclean) = (0, 0, 0.0f64, 0);
    for r in runs.iter().filter(|r| r["name"] == name) {
        total += 1;
        if let Some(o) = disturbance(r) {
            disturbed += 1;
            worst = worst.max(o);
        }
        if r.pointer("/result/ok").and_then(Value::as_bool) != Some(true) {
            unclean += 1;
        }
    }
    if disturbed > 0 {
        notes.push(format!(
            "- {title}: {disturbed} of {total} runs shared the machine with other work or \
             lost CPU to the VM's host (up to {worst:.0}% of a core): treat these numbers \
             as rough."
        ));
    }
    if unclean > 0 {
        notes.push(format!(
            "- {title}: {unclean} of {total} runs not clean (loss, errors or timeout); \
             see the results file."
        ));
    }
    let saturated: Vec<String> = targets
        .iter()
        .zip(per_target)
        .filter_map(|(target, res)| {
            let busy = median(res, "/results/client_core_busy_pct").0.or(median(
                res,
                "/results/burst_client_core_busy_pct",
            )
            .0)?;
            (busy >= 90.0).then(|| format!("{busy:.0}% against {target}"))
        })
        .collect();
    if !saturated.is_empty() {
        notes.push(format!(
            "- {title}: the load tool's core was busy ({}), so the client was (close to) \
             the limit and the ratio may understate the faster server.",
            saturated.join(", ")
        ));
    }
    notes
}

/// How much other work shared the machine during run `r`, in percent of a core, when
/// it was enough to matter: other processes' CPU plus what the VM's host stole from the
/// cores during the run or, for older files, how busy the cores were just before it.
fn disturbance(r: &Value) -> Option<f64> {
    let during_any = |fields: [&str; 2]| {
        fields.iter().find_map(|f| {
            r.pointer(&format!("/result/results/{f}"))
                .and_then(Value::as_f64)
        })
    };
    let others = during_any(["other_cpu_pct", "burst_other_cpu_pct"]);
    let steal = during_any(["steal_pct", "burst_steal_pct"]).unwrap_or(0.0);
    let during = others.map(|o| o + steal);
    let before = r["background_busy_pct"]
        .as_array()
        .and_then(|v| v.iter().filter_map(Value::as_f64).reduce(f64::max));
    match (during, before) {
        (Some(o), _) => (o > 15.0).then_some(o),
        (None, Some(b)) => (b >= 10.0).then_some(b),
        _ => None,
    }
}

/// `scenario`'s rows: per metric, each server's median and spread, then herald's ratios.
fn rows(scenario: &Scenario<'_>, per_target: &[Vec<&Value>]) -> String {
    let mut s = String::new();
    for (i, metric) in metrics(scenario.kind, scenario.rated).iter().enumerate() {
        let medians: Vec<(Option<f64>, Option<f64>)> = per_target
            .iter()
            .map(|res| median(res, metric.pointer))
            .collect();
        let herald = medians.first().and_then(|m| m.0);
        let better = match metric.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Info => "",
        };
        let title = if i == 0 { scenario.title } else { "" };
        let mut row = format!("| {title} | {} |", metric.label);
        for (value, spread) in &medians {
            let _ = write!(
                row,
                " {}{} |",
                fmt_num(*value, metric.decimals),
                fmt_spread(*spread)
            );
        }
        for (other, _) in medians.iter().skip(1) {
            let ratio = match (herald, other, metric.better) {
                (_, _, Better::Info) => String::new(),
                (Some(h), Some(o), _) if *o != 0.0 => format!("{:.2}", h / o),
                (Some(0.0), Some(_), _) => "=".to_string(),
                _ => "–".to_string(),
            };
            let _ = write!(row, " {ratio} |");
        }
        let _ = writeln!(s, "{row} {better} |");
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn run(name: &str, target: &str, rps: f64) -> serde_json::Value {
        json!({"name": name, "title": name, "target": target, "rep": 1,
               "result": {"scenario": "ingest", "ok": true, "params": {},
                          "results": {"requests_per_s": rps}}})
    }

    #[test]
    fn every_server_gets_a_column_and_herald_a_ratio_to_each() {
        let doc = json!({"timestamp": "T", "mode": "quick", "machine": {}, "runs": [
            run("plain", "herald", 100.0), run("plain", "reference", 200.0),
            run("plain", "bun", 50.0),
            run("batch", "herald", 10.0), run("batch", "bun", 20.0),
        ]});
        let table = super::render(&doc);
        assert!(
            table.contains("| herald | reference | bun | herald/reference | herald/bun | better |"),
            "{table}"
        );
        assert!(
            table.contains("| plain | requests/s | 100 | 200 | 50 | 0.50 | 2.00 | higher |"),
            "{table}"
        );
        // A scenario reference-server did not run: no value, no ratio.
        assert!(
            table.contains("| batch | requests/s | 10 | – | 20 | – | 0.50 | higher |"),
            "{table}"
        );
    }
}
