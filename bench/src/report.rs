//! Output: a human-readable table on stdout, then exactly one line of JSON (the last
//! line, so `herald-bench ... | tail -n1 | jq` works). Progress goes to stderr.

use serde_json::Value;

pub struct Report {
    pub title: String,
    pub rows: Vec<(String, String)>,
    /// `{"scenario", "ok", "params", "results", ...}`
    pub json: Value,
    pub ok: bool,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
            json: Value::Null,
            ok: true,
        }
    }

    pub fn row(&mut self, name: &str, value: impl std::fmt::Display) {
        self.rows.push((name.to_string(), value.to_string()));
    }

    /// The CPU rows shared by the timed scenarios: who used how much, and which side was
    /// the limit.
    pub fn cpu_rows(&mut self, cpu: &crate::cpu::CpuUse) {
        if let Some(p) = cpu.hub {
            self.row("hub CPU (of one core)", format!("{p:.0} %"));
        }
        if let Some(p) = cpu.client {
            self.row("client CPU (of one core)", format!("{p:.0} %"));
        }
        self.row(
            "cores busy (incl. softirq)",
            format!("{:?} %", cpu.cores_busy),
        );
        self.row(
            "bottleneck",
            crate::cpu::bottleneck(cpu.hub_core, cpu.client_core),
        );
        if let Some(o) = cpu.others {
            self.row("other processes' CPU (of one core)", format!("{o:.0} %"));
        }
    }

    pub fn print(&self) {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!("{}", self.title);
        println!("{}", "-".repeat(self.title.len().max(20)));
        for (k, v) in &self.rows {
            println!("  {k:<width$}  {v}");
        }
        println!("  {:<width$}  {}", "ok", self.ok);
        println!("{}", self.json);
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

/// A latency JSON object (see `latency::latency_json`) as `p50 / p90 / p99 / max ms`.
pub fn latency_row(lat: &Value) -> String {
    let f = |k: &str| {
        lat.get(k)
            .and_then(Value::as_f64)
            .map_or("-".to_string(), |v| format!("{v:.2}"))
    };
    format!(
        "{} / {} / {} / {} ms",
        f("p50"),
        f("p90"),
        f("p99"),
        f("max")
    )
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
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
