//! The fast formatters must write exactly what the stock ones write: each case runs the
//! same spans and events under a subscriber with each and compares the log output.

use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Text,
    Ansi,
    Json,
}

/// What `run` logs under a subscriber in `format`, with herald's field formatter
/// (`fast`) or the stock one.
fn logged(format: Format, fast: bool, run: &dyn Fn()) -> String {
    let out = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .without_time()
        .with_max_level(tracing::Level::TRACE);
    let dispatch = match (format, fast) {
        (Format::Json, true) => builder
            .json()
            .fmt_fields(JsonFields::default())
            .finish()
            .into(),
        (Format::Json, false) => builder.json().finish().into(),
        (Format::Text | Format::Ansi, fast) => {
            let builder = builder.with_ansi(matches!(format, Format::Ansi));
            if fast {
                builder.fmt_fields(TextFields::default()).finish().into()
            } else {
                builder.finish().into()
            }
        }
    };
    tracing::dispatcher::with_default(&dispatch, run);
    out.text()
}

fn same_in_every_format(run: &dyn Fn()) {
    for format in [Format::Text, Format::Ansi, Format::Json] {
        let stock = logged(format, false, run);
        assert!(!stock.is_empty());
        assert_eq!(logged(format, true, run), stock, "{format:?}");
    }
}

#[test]
fn request_and_connection_spans_are_written_as_the_stock_formatters_write_them() {
    same_in_every_format(&|| {
        let method = warp::http::Method::POST;
        let request = tracing::info_span!("request", method = %method, route = "/notify", request_id = "0123abcd");
        let _request = request.enter();
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let conn = tracing::info_span!(
            "conn",
            conn = 42u64,
            user = Some(tracing::field::display("ana")),
            remote = Some(tracing::field::display(addr)),
        );
        let _conn = conn.enter();
        tracing::info!(status = 202u64, took_us = 17u64, "request finished");
    });
}

#[test]
fn fields_recorded_later_are_added_as_the_stock_formatters_add_them() {
    same_in_every_format(&|| {
        let span = tracing::info_span!(
            "request",
            method = "GET",
            route = tracing::field::Empty,
            request_id = "x"
        );
        span.record("route", "/groups/{group}");
        span.record("request_id", "y");
        let _in = span.enter();
        tracing::warn!("inside");
    });
}

#[test]
fn values_the_fast_path_leaves_to_the_stock_formatters_come_out_the_same() {
    same_in_every_format(&|| {
        let long = "x".repeat(400);
        let spans = [
            tracing::info_span!("s", quoted = "a \"b\" \\ c", tab = "a\tb"),
            tracing::info_span!("s", unicode = "é ✓", nul = "\0", apostrophe = "it's"),
            tracing::info_span!(
                "s",
                float = 1.5f64,
                big = u128::MAX,
                neg = -3i64,
                yes = true
            ),
            tracing::info_span!("s", r#type = "raw", debug = ?Some("x")),
            tracing::info_span!("s", long = long.as_str()),
            tracing::info_span!(
                "s",
                a = 1,
                b = 2,
                c = 3,
                d = 4,
                e = 5,
                f = 6,
                g = 7,
                h = 8,
                i = 9
            ),
            tracing::info_span!("s", z = 1, a = 2, m = "mid"),
            tracing::info_span!("s"),
        ];
        for span in spans {
            let _in = span.enter();
            tracing::info!(n = 1, "event");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_string_value_comes_out_the_same(value in any::<String>(), other in any::<String>()) {
        same_in_every_format(&|| {
            let span = tracing::info_span!(
                "s",
                text = value.as_str(),
                shown = %other,
                route = tracing::field::Empty,
            );
            span.record("route", value.as_str());
            let _in = span.enter();
            tracing::info!("event");
        });
    }
}
