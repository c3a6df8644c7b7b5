//! Output: a human-readable table on stdout, then exactly one line of JSON (the last
//! line, so `herald-bench ... | tail -n1 | jq` works). Progress goes to stderr.
//!
//! A scenario describes its run once, as an [`Outcome`] whose `params` and `results` are
//! `Serialize` structs. The JSON line is that outcome; the table is the same result
//! fields, one row per field in the order the struct declares them. So a result is
//! written in one place and cannot say one thing in the table and another in the JSON.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Error as _, Serialize, Serializer};
use serde_json::Value;

/// What one run of a scenario found: the JSON line `bench/run.sh` and `summary` read
/// (`{"scenario", "ok", "target", "params", "results"}`, plus `peer` for `cluster`).
#[derive(serde::Serialize)]
pub struct Outcome<'a, P, R> {
    /// The subcommand (`fanout`, `conns`, ...).
    pub scenario: &'static str,
    /// No loss, no errors, no timeout: the exit status is 0.
    pub ok: bool,
    /// The hub's `--url`.
    pub target: &'a str,
    /// The second hub, for scenarios that talk to two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a str>,
    /// The arguments that shape the load.
    pub params: &'a P,
    /// The measurements, in the order the table shows them.
    pub results: &'a R,
}

/// A finished run, ready to print.
pub struct Report {
    title: String,
    /// Whether the run was clean (see [`Outcome::ok`]).
    pub ok: bool,
    /// `target`, `peer` and the result fields, in table order.
    rows: Vec<(String, Value)>,
    /// What the table says beyond the result fields (which core was the limit, the
    /// first error's text); not part of the JSON line.
    notes: Vec<(String, String)>,
    json: Value,
}

impl Report {
    /// The report of `outcome`, headed by `title`.
    pub fn new<P: Serialize, R: Serialize>(
        title: impl Into<String>,
        outcome: &Outcome<'_, P, R>,
    ) -> Self {
        let mut rows = vec![("target".to_string(), Value::from(outcome.target))];
        if let Some(peer) = outcome.peer {
            rows.push(("peer".to_string(), Value::from(peer)));
        }
        rows.extend(fields_in_order(outcome.results));
        Self {
            title: title.into(),
            ok: outcome.ok,
            rows,
            notes: Vec::new(),
            // Serialising plain structs of numbers, strings and maps cannot fail; a
            // `Value` also keeps the line's keys sorted, as they always were.
            json: serde_json::to_value(outcome).unwrap_or(Value::Null),
        }
    }

    /// Adds a line to the table only.
    pub fn note(&mut self, label: &str, text: impl fmt::Display) {
        self.notes.push((label.to_string(), text.to_string()));
    }

    /// The table, then the JSON line.
    pub fn print(&self) {
        print!("{}", self.table());
        println!("{}", self.json);
    }

    fn table(&self) -> String {
        let cells: Vec<(&str, String)> = self
            .rows
            .iter()
            .map(|(k, v)| (k.as_str(), cell(v)))
            .chain(self.notes.iter().map(|(k, v)| (k.as_str(), v.clone())))
            .chain([("ok", self.ok.to_string())])
            .collect();
        let width = cells.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("{}\n{}\n", self.title, "-".repeat(self.title.len().max(20)));
        for (k, v) in cells {
            out.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        out
    }
}

/// The top-level fields of `value` in the order serde writes them (a `Value` would sort
/// them by name).
fn fields_in_order(value: &impl Serialize) -> Vec<(String, Value)> {
    struct Fields(Vec<(String, Value)>);
    struct FieldsVisitor;
    impl<'de> Visitor<'de> for FieldsVisitor {
        type Value = Fields;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
            let mut fields = Vec::new();
            while let Some(field) = map.next_entry()? {
                fields.push(field);
            }
            Ok(Fields(fields))
        }
    }
    impl<'de> Deserialize<'de> for Fields {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(FieldsVisitor)
        }
    }
    serde_json::to_string(value)
        .and_then(|json| serde_json::from_str::<Fields>(&json))
        .map_or_else(|_| Vec::new(), |f| f.0)
}

/// One result value as a table cell: counts with thousands separators, latencies as
/// their percentiles, `-` for nothing measured.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(n), _) => thousands(n),
            (None, Some(x)) if x.fract() == 0.0 && (0.0..1e15).contains(&x) => thousands(x as u64),
            _ => n.to_string(),
        },
        // Long series (soak's samples) are for the JSON and its readers.
        Value::Array(items) if items.len() > 8 => format!("{} entries (see the JSON)", items.len()),
        // Not `, `: counts have commas of their own.
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(cell).collect();
            format!("[{}]", items.join(" / "))
        }
        Value::Object(o) if o.contains_key("p99") => latency_cell(v),
        Value::Object(o) if o.is_empty() => "none".to_string(),
        Value::Object(o) => {
            let items: Vec<String> = o.iter().map(|(k, v)| format!("{k}: {}", cell(v))).collect();
            items.join(", ")
        }
    }
}

/// A latency object (see `latency::Latency`) as `p50 a, p90 b, p99 c, max d ms (n)`.
fn latency_cell(lat: &Value) -> String {
    let count = lat["count"].as_u64().unwrap_or(0);
    if count == 0 {
        return "no samples".to_string();
    }
    let ms = |k: &str| {
        lat[k]
            .as_f64()
            .map_or("-".to_string(), |v| format!("{v:.2}"))
    };
    format!(
        "p50 {}, p90 {}, p99 {}, max {} ms ({} samples)",
        ms("p50"),
        ms("p90"),
        ms("p99"),
        ms("max"),
        thousands(count)
    )
}

/// Serialises the fields of a struct with `prefix` before each name: the CPU fields of
/// a burst are `burst_hub_cpu_pct` and so on. Use it with `#[serde(flatten)]`.
pub struct Prefixed<T>(pub &'static str, pub T);

impl<T: Serialize> Serialize for Prefixed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = fields_in_order(&self.1);
        if fields.is_empty() {
            return Err(S::Error::custom("Prefixed needs a struct with fields"));
        }
        s.collect_map(
            fields
                .into_iter()
                .map(|(k, v)| (format!("{}{k}", self.0), v)),
        )
    }
}

/// `12345678` -> `"12,345,678"`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `x` rounded to one decimal, for output.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to three decimals, for output.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[derive(serde::Serialize)]
    struct Cpu {
        hub_cpu_pct: Option<f64>,
        cores: Vec<f64>,
    }

    #[derive(serde::Serialize)]
    struct Results {
        zeta: u64,
        alpha: f64,
        latency_ms: Value,
        statuses: BTreeMap<u16, u64>,
        #[serde(flatten)]
        cpu: Prefixed<&'static Cpu>,
    }

    static CPU: Cpu = Cpu {
        hub_cpu_pct: Some(97.0),
        cores: Vec::new(),
    };

    fn report() -> Report {
        let results = Results {
            zeta: 2_000_000,
            alpha: 0.25,
            latency_ms: json!({"count": 3, "p50": 1.0, "p90": 2.0, "p99": 3.5, "max": 4.0}),
            statuses: BTreeMap::from([(202, 200)]),
            cpu: Prefixed("burst_", &CPU),
        };
        Report::new(
            "title",
            &Outcome {
                scenario: "test",
                ok: true,
                target: "http://127.0.0.1:1",
                peer: None,
                params: &json!({"n": 1}),
                results: &results,
            },
        )
    }

    #[test]
    fn the_json_line_is_the_outcome_with_sorted_keys() {
        let r = report();
        assert_eq!(
            r.json.to_string(),
            r#"{"ok":true,"params":{"n":1},"results":{"alpha":0.25,"burst_cores":[],"burst_hub_cpu_pct":97.0,"latency_ms":{"count":3,"max":4.0,"p50":1.0,"p90":2.0,"p99":3.5},"statuses":{"202":200},"zeta":2000000},"scenario":"test","target":"http://127.0.0.1:1"}"#
        );
    }

    #[test]
    fn the_table_shows_the_same_fields_in_declaration_order() {
        let mut r = report();
        r.note("bottleneck", "hub core saturated");
        let table = r.table();
        let rows: Vec<&str> = table.lines().skip(2).map(str::trim).collect();
        assert_eq!(
            rows,
            [
                "target             http://127.0.0.1:1",
                "zeta               2,000,000",
                "alpha              0.25",
                "latency_ms         p50 1.00, p90 2.00, p99 3.50, max 4.00 ms (3 samples)",
                "statuses           202: 200",
                "burst_hub_cpu_pct  97",
                "burst_cores        []",
                "bottleneck         hub core saturated",
                "ok                 true",
            ]
        );
    }
}
