//! The event trace of a run: every application event at `info` or above from Coffer's crates
//! and from the simulation itself, with the simulated time and the host it happened on.
//!
//! Two runs of one seed must record the same trace; the determinism test compares its hash.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// The name of the span turmoil opens around each host's step; its `name` field is the host.
const HOST_SPAN: &str = "node";

/// The recorded lines of one run, shared with the layer that writes them.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    /// Installs a recorder of this trace as the thread's subscriber until the guard drops.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(Recorder {
            lines: Arc::clone(&self.lines),
        });
        tracing::subscriber::set_default(subscriber)
    }

    /// Returns the number of recorded lines.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Returns whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Returns the SHA-256 of the whole trace, hex-encoded.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for line in self.lock().iter() {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    }

    /// Returns the last `count` lines.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let lines = self.lock();
        lines[lines.len().saturating_sub(count)..].to_vec()
    }

    /// Returns every line.
    pub fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
}

/// The host name stored in the extensions of turmoil's host span.
struct HostName(String);

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != HOST_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(HostName(fields.name.unwrap_or_default()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let target = metadata.target();
        if *metadata.level() > Level::INFO
            || !(target.starts_with("coffer") || target.starts_with("sim"))
        {
            return;
        }
        let host = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|span| span.extensions().get::<HostName>().map(|h| h.0.clone()))
            })
            .unwrap_or_else(|| "-".to_owned());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        let line = format!(
            "{elapsed:>8} {host} {} {target}: {}",
            metadata.level(),
            fields.text
        );
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

/// An event's message and fields in declaration order, and a span's `name` field.
#[derive(Default)]
struct Fields {
    text: String,
    name: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "name" {
            self.name = Some(value.to_owned());
        }
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.text, "{}={value:?}", field.name());
        }
    }
}
