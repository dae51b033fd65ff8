//! [`TracingRecorder`]: a `tracing` subscriber that keeps every span, recorded field and
//! event as text, for the tests that check what obauth tells `tracing` (and that no secret
//! is among it).

use std::sync::{Arc, Mutex};

/// Every span (name and fields, also those recorded later) and every event (fields and
/// message), as text. Clone it, install a clone, read the other.
#[derive(Clone, Default)]
pub struct TracingRecorder {
    lines: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<(tracing::Level, String)>>>,
    next_id: Arc<Mutex<u64>>,
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl TracingRecorder {
    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }

    /// The events so far, each with its level and its fields (the message among them).
    pub fn events(&self) -> Vec<(tracing::Level, String)> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Everything recorded so far, one line per span, record or event.
    pub fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }
}

impl tracing::Subscriber for TracingRecorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.push(line);
        let mut next = self
            .next_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next += 1;
        tracing::span::Id::from_u64(*next)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = "record".to_owned();
        values.record(&mut Fields(&mut line));
        self.push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = String::new();
        event.record(&mut Fields(&mut fields));
        let level = *event.metadata().level();
        self.push(format!("event {level}{fields}"));
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((level, fields));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
