//! A `request` span made only when something inside it needs it: an event at an
//! enabled level, a span opened inside it, or `Span::current()`. Opening and closing a
//! span in `tracing-subscriber` (a registry slot, an extensions map, its fields formatted
//! into a `String`, entered and exited at every poll) costs about as much as the rest of
//! a `POST /notify`, and a request that logs nothing never shows it.
//!
//! The request runs in a [`Deferred`] scope, which leaves the span's fields in a
//! thread-local slot while it runs; [`DeferredSpans`], wrapped around the global
//! subscriber, makes the span from them (and enters it) just before the first event,
//! span or `current_span` that comes while they are there. Log lines are the same as
//! with an eagerly made span: the same name, fields, values and parent.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{display, Field, Value, ValueSet};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Span, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use warp::http::Method;

/// Set once a [`DeferredSpans`] is the global subscriber; until then (and in tests that
/// install another subscriber) [`Deferred`] makes its span at once.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The fields of a `request` span not made yet.
pub struct RequestFields {
    /// The span's callsite: a `request` span with the fields `method`, `route` and
    /// `request_id`, in that order.
    pub meta: &'static Metadata<'static>,
    /// The request's method, shown with `Display` (as `method = %method` would).
    pub method: Method,
    /// The route template.
    pub route: &'static str,
    /// The request id.
    pub request_id: ShortText,
}

/// Up to 64 bytes of text kept inline: a request id (at most 64 characters, see
/// `transport::observe`) without the allocation cloning a `HeaderValue` can take.
pub struct ShortText {
    bytes: [u8; 64],
    len: usize,
}

impl ShortText {
    /// `text`, cut to its first 64 bytes (at a character boundary) if longer.
    pub fn new(text: &str) -> Self {
        let mut len = text.len().min(64);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 64];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self { bytes, len }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl RequestFields {
    /// Calls `f` with the span's field values.
    fn with_values<T>(&self, f: impl FnOnce(&ValueSet<'_>) -> T) -> T {
        let fields = self.meta.fields();
        let (Some(method), Some(route), Some(request_id)) = (
            fields.field("method"),
            fields.field("route"),
            fields.field("request_id"),
        ) else {
            // Not a callsite with these fields: the span without values rather than a
            // panic in the middle of logging.
            let none: [(&Field, Option<&dyn Value>); 0] = [];
            return f(&fields.value_set(&none));
        };
        let shown_method = display(&self.method);
        let id = self.request_id.as_str();
        let values: [(&Field, Option<&dyn Value>); 3] = [
            (&method, Some(&shown_method)),
            (&route, Some(&self.route)),
            (&request_id, Some(&id)),
        ];
        f(&fields.value_set(&values))
    }

    /// The span, made at once (with the current span as its parent, as the macros do).
    fn make(&self) -> Span {
        if tracing::dispatcher::get_default(|dispatch| dispatch.enabled(self.meta)) {
            self.with_values(|values| Span::new(self.meta, values))
        } else {
            Span::none()
        }
    }
}

/// What the running request's span is, on this thread, while a [`Deferred`] scope runs.
#[derive(Default)]
enum Slot {
    /// No deferred scope is running.
    #[default]
    Empty,
    /// Not made yet.
    Pending(RequestFields),
    /// Made and entered by [`DeferredSpans`]; the scope exits it when its turn ends.
    Made(Id),
    /// The subscriber does not want it (filtered out): never made.
    Off,
}

thread_local! {
    static SLOT: Cell<Slot> = const { Cell::new(Slot::Empty) };
}

/// A request's span, made when first needed. Run each step of the request (each poll)
/// in [`Deferred::in_scope`]; dropping it closes the span if it was made.
pub struct Deferred {
    state: State,
}

enum State {
    Pending(RequestFields),
    Made {
        id: Id,
        dispatch: Dispatch,
    },
    /// Made at once: no [`DeferredSpans`] is installed, or the caller made it.
    Eager(Span),
    Off,
}

impl Deferred {
    /// A request span with `fields`, not made yet.
    pub fn new(fields: RequestFields) -> Self {
        let state = if INSTALLED.load(Ordering::Acquire) {
            State::Pending(fields)
        } else {
            State::Eager(fields.make())
        };
        Self { state }
    }

    /// A span made already (with fields only known later, say).
    pub fn made(span: Span) -> Self {
        Self {
            state: State::Eager(span),
        }
    }

    /// Runs `f` inside the span: made already, it is entered; otherwise its fields wait
    /// in this thread's slot for [`DeferredSpans`] to make it, should `f` log.
    pub fn in_scope<T>(&mut self, f: impl FnOnce() -> T) -> T {
        match &self.state {
            State::Pending(_) | State::Made { .. } => {
                // The guard puts the slot back (and exits a span made or entered here)
                // even if `f` panics, so nothing of this request outlives its turn.
                let _turn = Turn::begin(&mut self.state);
                f()
            }
            State::Eager(span) => span.in_scope(f),
            State::Off => f(),
        }
    }
}

/// One turn of a [`Deferred`] scope on this thread: its state in the slot (or its span
/// entered) until dropped.
struct Turn<'a> {
    state: &'a mut State,
    /// What the slot held before.
    outer: Slot,
}

impl<'a> Turn<'a> {
    fn begin(state: &'a mut State) -> Self {
        let mine = match std::mem::replace(state, State::Off) {
            State::Pending(fields) => Slot::Pending(fields),
            State::Made { id, dispatch } => {
                dispatch.enter(&id);
                *state = State::Made { id, dispatch };
                Slot::Empty
            }
            other => {
                *state = other;
                Slot::Empty
            }
        };
        let outer = SLOT.with(|slot| slot.replace(mine));
        Self { state, outer }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mine = SLOT.with(|slot| slot.replace(std::mem::take(&mut self.outer)));
        match mine {
            Slot::Pending(fields) => *self.state = State::Pending(fields),
            Slot::Made(id) => {
                let dispatch = tracing::dispatcher::get_default(Dispatch::clone);
                dispatch.exit(&id);
                *self.state = State::Made { id, dispatch };
            }
            Slot::Off => *self.state = State::Off,
            Slot::Empty => {
                if let State::Made { id, dispatch } = &*self.state {
                    dispatch.exit(id);
                }
            }
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if let State::Made { id, dispatch } = std::mem::replace(&mut self.state, State::Off) {
            dispatch.try_close(id);
        }
    }
}

/// The global subscriber, making a [`Deferred`] span when its scope first needs it;
/// otherwise `inner`'s, unchanged.
pub struct DeferredSpans<S> {
    inner: S,
}

impl<S: Subscriber + Send + Sync + 'static> DeferredSpans<S> {
    /// Installs `inner`, wrapped, as the global subscriber (see
    /// [`SubscriberInitExt::try_init`]).
    pub fn try_init(inner: S) -> Result<(), TryInitError> {
        SubscriberInitExt::try_init(Self { inner })?;
        INSTALLED.store(true, Ordering::Release);
        Ok(())
    }
}

impl<S: Subscriber> DeferredSpans<S> {
    /// Makes and enters this thread's pending span, if there is one.
    fn make_pending(&self) {
        SLOT.with(|slot| {
            let fields = match slot.take() {
                Slot::Pending(fields) => fields,
                other => {
                    slot.set(other);
                    return;
                }
            };
            let made = if self.inner.enabled(fields.meta) {
                let id = fields.with_values(|values| {
                    self.inner.new_span(&Attributes::new(fields.meta, values))
                });
                self.inner.enter(&id);
                Slot::Made(id)
            } else {
                Slot::Off
            };
            slot.set(made);
        });
    }
}

impl<S: Subscriber> Subscriber for DeferredSpans<S> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        if span.is_contextual() {
            self.make_pending();
        }
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        if event.is_contextual() {
            self.make_pending();
        }
        self.inner.event(event);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    #[allow(deprecated)]
    fn drop_span(&self, id: Id) {
        self.inner.drop_span(id);
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> Current {
        self.make_pending();
        self.inner.current_span()
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing::field::Empty;

    use super::*;

    /// A writer into a shared buffer, for the fmt subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn fields(id: &'static str) -> RequestFields {
        let meta =
            tracing::info_span!("request", method = Empty, route = Empty, request_id = Empty)
                .metadata()
                .unwrap();
        RequestFields {
            meta,
            method: Method::POST,
            route: "/notify",
            request_id: ShortText::new(id),
        }
    }

    #[test]
    fn the_span_is_made_when_something_logs_in_it_and_only_then() {
        let lines = Lines::default();
        let writer = lines.clone();
        let inner = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        INSTALLED.store(true, Ordering::Release);
        tracing::subscriber::with_default(DeferredSpans { inner }, || {
            let mut quiet = Deferred::new(fields("quiet-1"));
            quiet.in_scope(|| tracing::debug!("not shown"));
            drop(quiet);
            let mut loud = Deferred::new(fields("loud-1"));
            loud.in_scope(|| tracing::info!("first turn"));
            loud.in_scope(|| tracing::info!("second turn"));
            tracing::info!("outside");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, message) in lines[..2].iter().zip(["first turn", "second turn"]) {
            assert!(
                line.contains(r#"request{method=POST route="/notify" request_id="loud-1"}"#)
                    && line.ends_with(message),
                "{line}"
            );
        }
        assert!(
            !lines[2].contains("request{") && lines[2].ends_with("outside"),
            "{text}"
        );
        assert!(!text.contains("quiet-1"), "{text}");
    }
}
