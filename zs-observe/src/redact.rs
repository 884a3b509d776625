//! Redaction of sensitive fields, shared by the log layers and the span exporter.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Field names that are always redacted: a field is sensitive when its name,
/// lowercased, contains one of these (so `db_password`, `access_token` and
/// `x_api_key` are covered; `-` matches `_`, so `x-api-key` is too).
pub const DEFAULT_SENSITIVE: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
];

/// Decides which field names are sensitive: the defaults plus a configured list.
#[derive(Clone, Debug)]
pub(crate) struct Redactor {
    names: Arc<Needles>,
    /// Tells this redactor's remembered answers apart from another's (see
    /// [`Redactor::is_sensitive_field`]); clones share it, as they share the names.
    id: u32,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The sensitive names, normalised (lowercase, `-` as `_`), with a table of their
/// first bytes: a field name is scanned once, and only a byte that starts some
/// needle is compared further. Asked for every field of every span and event, so
/// it must be cheap (the plain "each needle at each position" scan cost ~20,000
/// instructions per task of the example node, a quarter of its instrumentation).
#[derive(Debug)]
struct Needles {
    list: Vec<Box<[u8]>>,
    first: [bool; 256],
}

/// ASCII lowercase, and `-` as `_`, so header names (`x-api-key`) match too.
fn norm(b: u8) -> u8 {
    match b {
        b'-' => b'_',
        _ => b.to_ascii_lowercase(),
    }
}

impl Redactor {
    pub(crate) fn new(extra: &[String]) -> Redactor {
        let mut list: Vec<Box<[u8]>> = DEFAULT_SENSITIVE
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .filter(|n| !n.is_empty())
            .map(|n| n.bytes().map(norm).collect())
            .collect();
        list.dedup();
        let mut first = [false; 256];
        for n in &list {
            first[usize::from(n[0])] = true;
        }
        Redactor {
            names: Arc::new(Needles { list, first }),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// [`Redactor::is_sensitive`] for a field name from a callsite's metadata, remembered
    /// per thread: such a name is `'static`, so its address and length identify its
    /// text for the life of the program. Every field of every span and event asks,
    /// and the plain scan cost ~580 instructions a field in the example node (names
    /// are short, but `a`, `c`, `p`, `s`, `t` start a needle); a hit here is a handful.
    pub(crate) fn is_sensitive_field(&self, name: &'static str) -> bool {
        const SLOTS: usize = 256;
        type Slot = Cell<(usize, usize, u32, bool)>;
        thread_local! {
            static SEEN: [Slot; SLOTS] = const { [const { Cell::new((0, 0, 0, false)) }; SLOTS] };
        }
        let addr = name.as_ptr() as usize;
        let index = (addr ^ (addr >> 8) ^ name.len()) % SLOTS;
        SEEN.try_with(|seen| {
            let slot = &seen[index];
            let (a, len, id, answer) = slot.get();
            if a == addr && len == name.len() && id == self.id {
                return answer;
            }
            let answer = self.is_sensitive(name);
            slot.set((addr, name.len(), self.id, answer));
            answer
        })
        .unwrap_or_else(|_| self.is_sensitive(name))
    }

    /// [`Redactor::is_sensitive`] for an attribute key of a span being exported,
    /// remembered per thread by its text (keys are not `'static` there, so their
    /// address says nothing). The export thread sees the same few dozen keys span
    /// after span: the plain scan cost ~450 instructions a key in the example node,
    /// ~3,800 an exported span; a hit here hashes and compares the key once.
    pub(crate) fn is_sensitive_key(&self, key: &str) -> bool {
        const SLOTS: usize = 128;
        type Slot = Option<(u32, Box<str>, bool)>;
        thread_local! {
            static SEEN: std::cell::RefCell<Vec<Slot>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // FNV-1a: short keys, no need for a keyed hash (a collision costs a scan).
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let index = (hash % SLOTS as u64) as usize;
        SEEN.try_with(|seen| {
            let mut seen = seen.borrow_mut();
            if seen.is_empty() {
                seen.resize(SLOTS, None);
            }
            if let Some((id, text, answer)) = &seen[index] {
                if *id == self.id && &**text == key {
                    return *answer;
                }
            }
            let answer = self.is_sensitive(key);
            seen[index] = Some((self.id, key.into(), answer));
            answer
        })
        .unwrap_or_else(|_| self.is_sensitive(key))
    }

    /// Whether a field of this name must not be written out: its name contains a
    /// sensitive name, ignoring ASCII case, `-` and `_` counting as the same.
    pub(crate) fn is_sensitive(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        let needles = &*self.names;
        (0..bytes.len()).any(|i| {
            let c = norm(bytes[i]);
            needles.first[usize::from(c)]
                && needles.list.iter().any(|n| {
                    n[0] == c
                        && bytes.len() - i >= n.len()
                        && bytes[i + 1..i + n.len()]
                            .iter()
                            .zip(&n[1..])
                            .all(|(&a, &b)| norm(a) == b)
                })
        })
    }

    /// Replaces the values of sensitive attributes, and scrubs secrets written into
    /// the text of the others (see [`Redactor::scrub`]).
    pub(crate) fn redact_key_values(&self, attributes: &mut [opentelemetry::KeyValue]) {
        for kv in attributes.iter_mut() {
            if self.is_sensitive_key(kv.key.as_str()) {
                kv.value = opentelemetry::Value::from(REDACTED);
            } else if let opentelemetry::Value::String(text) = &kv.value {
                if let Cow::Owned(scrubbed) = self.scrub(text.as_str()) {
                    kv.value = opentelemetry::Value::from(scrubbed);
                }
            }
        }
    }

    /// Everything of a finished span that can carry a secret: attributes (by name
    /// and by text), the name, the error status message (an error's text, with
    /// `#[instrumented(err)]`), and the events' names (a log message inside the span)
    /// and attributes, and the links' attributes.
    pub(crate) fn redact_span(&self, span: &mut opentelemetry_sdk::trace::SpanData) {
        let scrub_cow = |text: &mut Cow<'static, str>| {
            if let Cow::Owned(scrubbed) = self.scrub(text) {
                *text = Cow::Owned(scrubbed);
            }
        };
        self.redact_key_values(&mut span.attributes);
        scrub_cow(&mut span.name);
        if let opentelemetry::trace::Status::Error { description } = &mut span.status {
            scrub_cow(description);
        }
        for event in span.events.events.iter_mut() {
            scrub_cow(&mut event.name);
            self.redact_key_values(&mut event.attributes);
        }
        for link in span.links.links.iter_mut() {
            self.redact_key_values(&mut link.attributes);
        }
    }

    /// Free text (a message, an error, a `Debug` rendering) with the secrets written
    /// into it replaced by [`REDACTED`]: the value after a sensitive name followed by
    /// `=` or `:` (`password=hunter2`, `"api_key": "k"`, `token: abc`,
    /// `Authorization: Bearer abc`; for cookies and authorization the rest of the
    /// quoted string or line), the credential after `Bearer` / `Basic`, and the
    /// password of a URL (`postgres://user:pw@host`). Text without a secret is
    /// returned as is, without allocating.
    pub(crate) fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let bytes = text.as_bytes();
        // Cheap exit: no separator and no scheme, nothing to look at.
        if !bytes
            .iter()
            .any(|&b| matches!(b, b'=' | b':' | b'B' | b'b' | b'@'))
        {
            return Cow::Borrowed(text);
        }
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let found = match b {
                b'=' | b':' => self.after_key(bytes, i),
                b'B' | b'b' if i == 0 || !is_word(bytes[i - 1]) => after_scheme(bytes, i),
                b'@' => url_password(bytes, i),
                _ => None,
            };
            match found {
                Some((start, end)) if end > start => {
                    if spans.last().is_none_or(|&(_, last_end)| start >= last_end) {
                        spans.push((start, end));
                    }
                    i = end.max(i + 1);
                }
                _ => i += 1,
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end) in spans {
            out.push_str(&text[last..start]);
            out.push_str(REDACTED);
            last = end;
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// The value after the separator at `sep` when the word before it is a
    /// sensitive name.
    fn after_key(&self, bytes: &[u8], sep: usize) -> Option<(usize, usize)> {
        // `://` is a URL, not a key.
        if bytes[sep] == b':' && bytes.get(sep + 1) == Some(&b'/') {
            return None;
        }
        let mut end = sep;
        while end > 0 && bytes[end - 1] == b' ' {
            end -= 1;
        }
        while end > 0 && matches!(bytes[end - 1], b'"' | b'\'' | b'\\') {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && is_key_byte(bytes[start - 1]) {
            start -= 1;
        }
        let key = std::str::from_utf8(&bytes[start..end]).ok()?;
        if key.is_empty() || !self.is_sensitive(key) {
            return None;
        }
        let whole_line = ["cookie", "authorization"]
            .iter()
            .any(|n| contains_ignore_case(key, n));
        value_span(bytes, sep + 1, whole_line)
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn contains_ignore_case(name: &str, needle: &str) -> bool {
    name.len() >= needle.len()
        && name
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The value starting at `from` (after spaces): up to the closing quote when it is
/// quoted, else to the end of the line (`whole_line`) or of the word; an auth
/// scheme (`Bearer x`) is skipped so its credential is what gets replaced.
fn value_span(bytes: &[u8], from: usize, whole_line: bool) -> Option<(usize, usize)> {
    let mut start = from;
    while start < bytes.len() && bytes[start] == b' ' {
        start += 1;
    }
    let mut quote = None;
    while start < bytes.len() && matches!(bytes[start], b'"' | b'\'' | b'\\') {
        if bytes[start] != b'\\' {
            quote = Some(bytes[start]);
        }
        start += 1;
    }
    if start >= bytes.len() {
        return None;
    }
    let end = match quote {
        Some(q) => {
            let mut end = start;
            while end < bytes.len() && bytes[end] != q {
                end += 1;
            }
            // An escaped quote (`\"` in a Debug rendering) closes it too.
            if end > start && bytes[end - 1] == b'\\' {
                end -= 1;
            }
            end
        }
        None if whole_line => {
            let mut end = start;
            while end < bytes.len() && !matches!(bytes[end], b'\n' | b'\r') {
                end += 1;
            }
            end
        }
        None => {
            if let Some(span) = after_scheme(bytes, start) {
                return Some(span);
            }
            word_end(bytes, start)
        }
    };
    Some((start, end))
}

/// The end of the unquoted word at `start`.
fn word_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len()
        && !bytes[end].is_ascii_whitespace()
        && !matches!(
            bytes[end],
            b',' | b';' | b'&' | b'"' | b'\'' | b')' | b'}' | b']'
        )
    {
        end += 1;
    }
    end
}

/// The credential after `Bearer ` / `Basic ` (any case) at `at`.
fn after_scheme(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    for scheme in ["bearer ", "basic "] {
        let n = scheme.len();
        if bytes.len() > at + n && bytes[at..at + n].eq_ignore_ascii_case(scheme.as_bytes()) {
            let mut start = at + n;
            while start < bytes.len() && bytes[start] == b' ' {
                start += 1;
            }
            let end = word_end(bytes, start);
            return (end > start).then_some((start, end));
        }
    }
    None
}

/// The password of `scheme://user:password@host` when `at` is its `@`.
fn url_password(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut i = at;
    while i > 0 {
        let b = bytes[i - 1];
        if b == b'/' {
            // `//` just before the user part: the authority of a URL.
            let authority = &bytes[i..at];
            let colon = authority.iter().position(|&c| c == b':')?;
            return (i >= 2 && bytes[i - 2] == b'/').then_some((i + colon + 1, at));
        }
        if b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'@') {
            return None;
        }
        i -= 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_extras() {
        let r = Redactor::new(&["ssn".to_owned()]);
        for name in [
            "password",
            "DB_PASSWORD",
            "access_token",
            "api_key",
            "x_api_key",
            "Authorization",
            "session_cookie",
            "customer_ssn",
            "x-api-key",
            "proxy-authorization",
            "set-cookie",
        ] {
            assert!(r.is_sensitive(name), "{name}");
        }
        for name in ["task_id", "peer", "message", "duration_seconds", "tok"] {
            assert!(!r.is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn secrets_in_free_text_are_scrubbed() {
        let r = Redactor::new(&[]);
        for (text, want) in [
            (
                "bad password=hunter2 for bob",
                "bad password=[REDACTED] for bob",
            ),
            (
                "login failed: password: hunter2",
                "login failed: password: [REDACTED]",
            ),
            (
                r#"{"user":"bob","api_key":"k-123","n":1}"#,
                r#"{"user":"bob","api_key":"[REDACTED]","n":1}"#,
            ),
            (
                r#"Login { user: "bob", password: "two words" }"#,
                r#"Login { user: "bob", password: "[REDACTED]" }"#,
            ),
            (
                r#"{"authorization": "Bearer abc.def", "cookie": "a=1; b=2"}"#,
                r#"{"authorization": "[REDACTED]", "cookie": "[REDACTED]"}"#,
            ),
            (
                "Authorization: Bearer abc.def\nnext",
                "Authorization: [REDACTED]\nnext",
            ),
            ("Cookie: sid=1; theme=dark", "Cookie: [REDACTED]"),
            (
                "sent Bearer abc.def upstream",
                "sent Bearer [REDACTED] upstream",
            ),
            ("token=abc&x=1", "token=[REDACTED]&x=1"),
            (
                "postgres://app:pw0rd@db:5432/x failed",
                "postgres://app:[REDACTED]@db:5432/x failed",
            ),
            (
                r#"msg "{\"password\":\"p\"}""#,
                r#"msg "{\"password\":\"[REDACTED]\"}""#,
            ),
        ] {
            assert_eq!(r.scrub(text), want, "{text}");
        }
        for plain in [
            "task t-1 done in 3 ms",
            "retrying: connection refused",
            "http://example.com/a?b=c",
            "user@example.com",
            "ratio=0.5 base=2",
            "",
        ] {
            assert!(matches!(r.scrub(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    proptest::proptest! {
        #[test]
        fn scrub_never_panics_and_removes_planted_secrets(
            before in "\\PC{0,30}",
            after in "[ ,;&\n]\\PC{0,30}",
            key in "(password|api_key|Authorization|session_token|SECRET)",
            sep in "(=|: |\": \")",
            secret in "[A-Za-z0-9_.~+/-]{8,30}",
            any in ".{0,60}",
        ) {
            let r = Redactor::new(&[]);
            let _ = r.scrub(&any);
            let text = format!("{before} {key}{sep}{secret}{after}");
            let scrubbed = r.scrub(&text);
            proptest::prop_assert!(!scrubbed.contains(&secret), "{text:?} -> {scrubbed:?}");
        }

        /// The first-byte scan answers exactly what "some needle occurs, ignoring
        /// case and `-`/`_`" answers, for names built from needle fragments.
        #[test]
        fn is_sensitive_matches_the_plain_definition(
            name in "(pass|word|passwd|TOK|ken|token|api|-|_|key|APIKEY|coo|kie|cred|ential|x|sec|ret|ssn|é|\\.){0,6}",
        ) {
            let extra = ["ssn".to_owned(), "X-Ret".to_owned()];
            let r = Redactor::new(&extra);
            let norm_str = |s: &str| s.bytes().map(norm).collect::<Vec<u8>>();
            let hay = norm_str(&name);
            let expected = DEFAULT_SENSITIVE
                .iter()
                .copied()
                .chain(extra.iter().map(String::as_str))
                .any(|n| {
                    let n = norm_str(n);
                    hay.windows(n.len()).any(|w| w == n.as_slice())
                });
            proptest::prop_assert_eq!(r.is_sensitive(&name), expected, "{:?}", name);
        }
    }

    #[test]
    fn remembered_key_answers_are_the_plain_answers() {
        let plain = Redactor::new(&[]);
        let ssn = Redactor::new(&["ssn".to_owned()]);
        // More keys than slots: collisions replace answers, never mix them up.
        let keys: Vec<String> = (0..300)
            .map(|i| match i % 4 {
                0 => format!("field_{i}"),
                1 => format!("customer_ssn_{i}"),
                2 => format!("x-api-key-{i}"),
                _ => format!("db.password.{i}"),
            })
            .collect();
        for _ in 0..2 {
            for key in &keys {
                for r in [&plain, &ssn] {
                    assert_eq!(r.is_sensitive_key(key), r.is_sensitive(key), "{key}");
                }
            }
        }
        assert!(!plain.is_sensitive_key("customer_ssn"));
        assert!(ssn.is_sensitive_key("customer_ssn"));
        assert!(plain.is_sensitive_key("db_password"));
    }

    #[test]
    fn remembered_answers_belong_to_their_redactor() {
        let plain = Redactor::new(&[]);
        let ssn = Redactor::new(&["ssn".to_owned()]);
        static NAMES: [&str; 4] = ["customer_ssn", "task.id", "db_password", "x-api-key"];
        for _ in 0..3 {
            for name in NAMES {
                assert_eq!(
                    plain.is_sensitive_field(name),
                    plain.is_sensitive(name),
                    "{name}"
                );
                assert_eq!(
                    ssn.is_sensitive_field(name),
                    ssn.is_sensitive(name),
                    "{name}"
                );
            }
        }
        assert!(!plain.is_sensitive_field("customer_ssn"));
        assert!(ssn.is_sensitive_field("customer_ssn"));
        assert!(ssn.clone().is_sensitive_field("customer_ssn"));
    }

    #[test]
    fn key_values_are_replaced() {
        let r = Redactor::new(&[]);
        let mut kvs = vec![
            opentelemetry::KeyValue::new("password", "hunter2"),
            opentelemetry::KeyValue::new("task", "t-1"),
            opentelemetry::KeyValue::new("exception.message", "bad password=hunter2"),
        ];
        r.redact_key_values(&mut kvs);
        assert_eq!(kvs[0].value.as_str(), REDACTED);
        assert_eq!(kvs[1].value.as_str(), "t-1");
        assert_eq!(kvs[2].value.as_str(), "bad password=[REDACTED]");
    }
}
