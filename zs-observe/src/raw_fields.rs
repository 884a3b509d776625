//! Span fields as light frames keep them (`crate::light`): the values as recorded,
//! with no redaction and no JSON until a log line is written inside the span.
//!
//! Most spans see no log line at all. Rendering their fields when they start (a
//! `serde_json::Value` and a redaction check per field, an allocation per text) was
//! ~15,500 instructions a task in the example node, more than half the cost of its
//! spans. Here numbers are stored as they are, text (strings, `Display` and `Debug`
//! values) is written into one buffer the frame keeps from span to span, and
//! [`RawFields::render`] does what the log layer did at the start, only when a line
//! needs it.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};

/// One field's value as recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Raw {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// Text in [`RawFields::text`], `start..end`.
    Text(u32, u32),
}

/// A field's value as [`RawFields::iter`] hands it out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum RawValue<'a> {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Text(&'a str),
}

/// A light span's fields, in recording order, later records of a name replacing
/// earlier ones.
#[derive(Debug, Default)]
pub(crate) struct RawFields {
    values: Vec<(&'static str, Raw)>,
    /// The text of every [`Raw::Text`], and of values replaced since (bounded: see
    /// [`RawFields::compact`]).
    text: String,
}

/// Text left behind by replaced values is dropped once the buffer is larger than
/// this and more than half of it is dead.
const COMPACT_ABOVE: usize = 1024;

impl RawFields {
    /// Empties the fields, keeping the capacity of both buffers for the next span.
    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.text.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The fields in recording order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, RawValue<'_>)> + '_ {
        self.values.iter().map(|&(name, raw)| {
            let value = match raw {
                Raw::U64(v) => RawValue::U64(v),
                Raw::I64(v) => RawValue::I64(v),
                Raw::F64(v) => RawValue::F64(v),
                Raw::Bool(v) => RawValue::Bool(v),
                Raw::Text(start, end) => {
                    RawValue::Text(self.text.get(start as usize..end as usize).unwrap_or(""))
                }
            };
            (name, value)
        })
    }

    /// Records a number under `name` (tests build frames without a callsite).
    #[cfg(test)]
    pub(crate) fn set_u64(&mut self, name: &'static str, value: u64) {
        self.set(name, Raw::U64(value));
    }

    /// The slot of `name` (`'static` names of one callsite are usually the same
    /// string: the address is compared first).
    fn position(&self, name: &'static str) -> Option<usize> {
        self.values
            .iter()
            .position(|(n, _)| std::ptr::eq(*n, name) || *n == name)
    }

    fn set(&mut self, name: &'static str, raw: Raw) {
        match self.position(name) {
            Some(i) => {
                let old = std::mem::replace(&mut self.values[i].1, raw);
                if matches!(old, Raw::Text(..)) {
                    self.compact();
                }
            }
            None => self.values.push((name, raw)),
        }
    }

    /// Records text written by `write` under `name`.
    fn set_text(&mut self, name: &'static str, write: impl FnOnce(&mut String)) {
        let slot = self.position(name);
        // A replaced value at the end of the buffer (the usual case: the span's last
        // text) gives its room back at once.
        if let Some(Raw::Text(start, end)) = slot.map(|i| self.values[i].1) {
            if end as usize == self.text.len() {
                self.text.truncate(start as usize);
            }
        }
        let start = self.text.len();
        write(&mut self.text);
        let end = self.text.len();
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) else {
            // Beyond 4 GiB of text in one span: the value is dropped, not the span.
            self.text.truncate(start);
            return;
        };
        match slot {
            Some(i) => {
                self.values[i].1 = Raw::Text(start, end);
                self.compact();
            }
            None => self.values.push((name, Raw::Text(start, end))),
        }
    }

    /// Drops the text of replaced values once it is most of a large buffer, so a span
    /// recording the same field again and again holds its live text and no more.
    fn compact(&mut self) {
        if self.text.len() <= COMPACT_ABOVE {
            return;
        }
        let live: usize = self
            .values
            .iter()
            .map(|(_, raw)| match raw {
                Raw::Text(start, end) => (end - start) as usize,
                _ => 0,
            })
            .sum();
        if live * 2 > self.text.len() {
            return;
        }
        let mut text = String::with_capacity(live);
        for (_, raw) in &mut self.values {
            if let Raw::Text(start, end) = raw {
                let new_start = text.len() as u32;
                text.push_str(&self.text[*start as usize..*end as usize]);
                *raw = Raw::Text(new_start, text.len() as u32);
            }
        }
        self.text = text;
    }
}

/// Records the values a span starts with into its empty fields (see
/// [`RawFields::fresh`]).
pub(crate) struct Fresh<'a>(&'a mut RawFields);

impl RawFields {
    /// A visitor for the values a new span starts with: the names of one callsite's
    /// field set are distinct, so values are appended without looking for an
    /// earlier value of the same name (the lookup compared strings, ~2,000
    /// instructions a task in the example node).
    pub(crate) fn fresh(&mut self) -> Fresh<'_> {
        Fresh(self)
    }

    fn push_text(&mut self, name: &'static str, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        write(&mut self.text);
        let end = self.text.len();
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => self.values.push((name, Raw::Text(start, end))),
            // Beyond 4 GiB of text in one span: the value is dropped, not the span.
            _ => self.text.truncate(start),
        }
    }
}

impl Visit for Fresh<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.values.push((field.name(), Raw::F64(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.values.push((field.name(), Raw::I64(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.values.push((field.name(), Raw::U64(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.values.push((field.name(), Raw::Bool(value)));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_text(field.name(), |text| text.push_str(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.push_text(field.name(), |text| {
            let _ = write!(text, "{value}");
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_text(field.name(), |text| {
            let _ = write!(text, "{value:?}");
        });
    }
}

impl Visit for RawFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Raw::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Raw::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Raw::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Raw::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set_text(field.name(), |text| text.push_str(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set_text(field.name(), |text| {
            let _ = write!(text, "{value}");
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set_text(field.name(), |text| {
            let _ = write!(text, "{value:?}");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CS: tracing::callsite::DefaultCallsite = tracing::callsite::DefaultCallsite::new(&META);
    static META: tracing::Metadata<'static> = tracing::metadata! {
        name: "raw",
        target: "zs_observe::raw_fields",
        level: tracing::Level::INFO,
        fields: &["n", "s", "d", "b", "f", "i"],
        callsite: &CS,
        kind: tracing::metadata::Kind::SPAN,
    };

    fn field(name: &str) -> Field {
        META.fields().field(name).unwrap()
    }

    #[test]
    fn values_keep_their_kind_and_text_lives_in_one_buffer() {
        let mut f = RawFields::default();
        f.record_u64(&field("n"), 7);
        f.record_str(&field("s"), "hello");
        f.record_debug(&field("d"), &format_args!("peer-{:02}", 3));
        f.record_bool(&field("b"), true);
        f.record_f64(&field("f"), 0.5);
        f.record_i64(&field("i"), -2);
        let got: Vec<_> = f.iter().collect();
        assert_eq!(
            got,
            vec![
                ("n", RawValue::U64(7)),
                ("s", RawValue::Text("hello")),
                ("d", RawValue::Text("peer-03")),
                ("b", RawValue::Bool(true)),
                ("f", RawValue::F64(0.5)),
                ("i", RawValue::I64(-2)),
            ]
        );
        assert_eq!(f.text, "hellopeer-03");
    }

    #[test]
    fn a_later_record_replaces_the_value_in_place() {
        let mut f = RawFields::default();
        f.record_str(&field("s"), "first");
        f.record_u64(&field("n"), 1);
        f.record_str(&field("s"), "second");
        f.record_u64(&field("n"), 2);
        f.record_u64(&field("s"), 3);
        let got: Vec<_> = f.iter().collect();
        assert_eq!(got, vec![("s", RawValue::U64(3)), ("n", RawValue::U64(2))]);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn replacing_text_again_and_again_does_not_grow_the_buffer() {
        let mut f = RawFields::default();
        f.record_str(&field("d"), "kept");
        for i in 0..10_000u32 {
            // Alternating fields: the replaced text is not always at the end.
            let name = if i % 2 == 0 { "s" } else { "d" };
            f.record_str(&field(name), &format!("value number {i:>40}"));
        }
        assert!(f.text.len() <= 2 * COMPACT_ABOVE, "{}", f.text.len());
        let got: Vec<_> = f.iter().collect();
        assert_eq!(
            got,
            vec![
                ("d", RawValue::Text(&format!("value number {:>40}", 9_999))),
                ("s", RawValue::Text(&format!("value number {:>40}", 9_998))),
            ]
        );
    }

    #[test]
    fn fresh_values_are_recorded_as_by_the_fields_themselves() {
        let record = |v: &mut dyn Visit| {
            v.record_u64(&field("n"), 7);
            v.record_str(&field("s"), "hello");
            v.record_debug(&field("d"), &format_args!("peer-{:02}", 3));
            v.record_bool(&field("b"), false);
            v.record_f64(&field("f"), -0.25);
            v.record_i64(&field("i"), i64::MIN);
        };
        let mut fresh = RawFields::default();
        record(&mut fresh.fresh());
        let mut plain = RawFields::default();
        record(&mut plain);
        assert_eq!(
            fresh.iter().collect::<Vec<_>>(),
            plain.iter().collect::<Vec<_>>()
        );
        assert_eq!(fresh.len(), 6);
        // Later records (through the frame, not `fresh`) still replace in place.
        fresh.record_str(&field("n"), "now text");
        assert_eq!(fresh.iter().next(), Some(("n", RawValue::Text("now text"))));
        assert_eq!(fresh.len(), 6);
    }

    #[test]
    fn clear_keeps_the_capacity() {
        let mut f = RawFields::default();
        f.record_str(&field("s"), "some text");
        f.record_u64(&field("n"), 1);
        let (values, text) = (f.values.capacity(), f.text.capacity());
        f.clear();
        assert!(f.is_empty());
        assert_eq!(f.iter().count(), 0);
        assert_eq!((f.values.capacity(), f.text.capacity()), (values, text));
    }
}
