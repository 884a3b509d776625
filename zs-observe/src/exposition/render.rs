//! The Prometheus text format (0.0.4): names, escaping and numbers.
//!
//! Label text is rendered once, when a series is registered; a scrape only copies
//! it and formats the values.

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: anything else becomes `_` (as
/// `metrics-exporter-prometheus` does).
pub(crate) fn metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: anything else becomes `_`.
pub(crate) fn label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colon: bool) -> String {
    let mut out = String::with_capacity(name.len().max(1));
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphabetic()
            || c == '_'
            || (colon && c == ':')
            || (i > 0 && c.is_ascii_digit());
        out.push(if ok { c } else { '_' });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A label value as the text format wants it: `\` → `\\`, `"` → `\"`, newline →
/// `\n`. Every byte of the value survives the round trip through a scrape.
pub(crate) fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A `# HELP` text: `\` → `\\`, newline → `\n`.
pub(crate) fn help_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `name="value",...` for the constant labels and the key's labels (a key label
/// replaces a constant one of the same name, in its place), without braces.
pub(crate) fn label_text<'a>(
    constant: &[(String, String)],
    key: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> String {
    let mut out = String::new();
    let push = |out: &mut String, name: &str, value: &str| {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&label_name(name));
        out.push_str("=\"");
        push_label_value(out, value);
        out.push('"');
    };
    for (name, value) in constant {
        let value = key
            .clone()
            .find(|(k, _)| k == name)
            .map_or(value.as_str(), |(_, v)| v);
        push(&mut out, name, value);
    }
    for (name, value) in key {
        if !constant.iter().any(|(k, _)| k == name) {
            push(&mut out, name, value);
        }
    }
    out
}

/// `name{labels} ` (or `name ` without labels), ready for the value.
#[inline]
pub(crate) fn push_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    match (labels.is_empty(), extra) {
        (true, None) => {}
        (_, extra) => {
            out.push('{');
            out.push_str(labels);
            if let Some((k, v)) = extra {
                if !labels.is_empty() {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                out.push_str(v);
                out.push('"');
            }
            out.push('}');
        }
    }
    out.push(' ');
}

#[inline]
pub(crate) fn push_u64(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Shortest text that reads back as the same `f64`; `+Inf`, `-Inf` and `NaN` as
/// the format spells them.
pub(crate) fn push_f64(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(metric_name("a.b-c:d"), "a_b_c:d");
        assert_eq!(metric_name("1abc"), "_abc");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(label_name(""), "_");
    }

    #[test]
    fn label_values_are_escaped_losslessly() {
        let mut s = String::new();
        push_label_value(&mut s, "a\\b\"c\nd\\\\é");
        assert_eq!(s, r#"a\\b\"c\nd\\\\é"#);
    }

    #[test]
    fn key_labels_replace_constant_ones_in_place() {
        let constant = vec![
            ("service".to_owned(), "s".to_owned()),
            ("env".to_owned(), "e".to_owned()),
        ];
        let key = [("env", "prod"), ("route", "/x")];
        assert_eq!(
            label_text(&constant, key.iter().copied()),
            r#"service="s",env="prod",route="/x""#
        );
    }

    #[test]
    fn numbers() {
        let mut s = String::new();
        for v in [1.0, 0.5, 1e-7, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            push_f64(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.5 0.0000001 +Inf -Inf NaN ");
    }
}
