//! A typed reading of a Prometheus text exposition: families with their `# TYPE`,
//! samples with escaped label values, and the invariants a scrape must keep
//! (histogram `_count` equals its `+Inf` bucket, buckets cumulative, counters
//! monotonic from one scrape to the next). Errors are returned as text, so a test
//! can say which scrape broke which rule.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The sample name as written (with `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A metric family: its `# TYPE` and its sample lines.
#[derive(Debug, Clone, Default)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// Its sample lines, in exposition order.
    pub lines: Vec<Line>,
}

/// A parsed exposition: families by name.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Families by their `# TYPE` name.
    pub families: BTreeMap<String, Family>,
}

/// `name{k="v",...}` with labels sorted (values re-escaped), the identity of a series.
pub fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", parts.join(","))
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        v => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Parses one sample line: `name{k="v",...} value [timestamp]`.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let err = |what: &str| format!("{what} in {line:?}");
    let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
    let name = line[..name_end].to_owned();
    if name.is_empty() {
        return Err(err("empty name"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            // Skip a separating comma, find `}` or a label name.
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i + 1);
                    break;
                }
                Some((_, ',')) => {
                    chars.next();
                    continue;
                }
                Some(_) => {}
                None => break,
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(err("label value not quoted"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        other => return Err(err(&format!("bad escape {other:?}"))),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(err("unterminated label value"));
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(err(&format!("label {key} twice")));
            }
        }
        let end = end.ok_or_else(|| err("no closing brace"))?;
        rest = &after[end..];
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or_else(|| err("no value"))?).map_err(|e| err(&e))?;
    Ok(Line {
        name,
        labels,
        value,
    })
}

/// The family a sample named `name` belongs to, among `families`.
fn family_of<'a>(families: &'a BTreeMap<String, Family>, name: &str) -> Option<&'a str> {
    if families.contains_key(name) {
        return families.get_key_value(name).map(|(k, _)| k.as_str());
    }
    for suffix in ["_bucket", "_sum", "_count", "_total"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some((k, _)) = families.get_key_value(base) {
                return Some(k.as_str());
            }
        }
    }
    None
}

/// Parses a whole exposition; every sample must follow a `# TYPE` of its family.
pub fn parse(body: &str) -> Result<Scrape, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in body.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let (name, kind) = decl
                .split_once(' ')
                .ok_or_else(|| format!("bad TYPE line {line:?}"))?;
            families.entry(name.to_owned()).or_default().kind = kind.trim().to_owned();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line)?;
        let family = family_of(&families, &sample.name)
            .ok_or_else(|| format!("sample without a # TYPE: {line:?}"))?
            .to_owned();
        families
            .get_mut(&family)
            .expect("family exists")
            .lines
            .push(sample);
    }
    Ok(Scrape { families })
}

/// One histogram series: its buckets by upper bound, `_count` and `_sum`.
#[derive(Debug, Clone, Default)]
pub struct HistogramSeries {
    /// `(le, cumulative count)`, in exposition order.
    pub buckets: Vec<(f64, f64)>,
    /// `_count`.
    pub count: Option<f64>,
    /// `_sum`.
    pub sum: Option<f64>,
}

impl Scrape {
    /// Every counter series: key → value.
    pub fn counters(&self) -> BTreeMap<String, f64> {
        self.families
            .values()
            .filter(|f| f.kind == "counter")
            .flat_map(|f| f.lines.iter())
            .map(|l| (series_key(&l.name, &l.labels), l.value))
            .collect()
    }

    /// Every histogram series, keyed by family name and labels without `le`.
    pub fn histograms(&self) -> BTreeMap<String, HistogramSeries> {
        let mut out: BTreeMap<String, HistogramSeries> = BTreeMap::new();
        for (name, family) in self.families.iter().filter(|(_, f)| f.kind == "histogram") {
            for line in &family.lines {
                let mut labels = line.labels.clone();
                let le = labels.remove("le");
                let series = out.entry(series_key(name, &labels)).or_default();
                match line.name.strip_prefix(name.as_str()) {
                    Some("_bucket") => {
                        let le = le.as_deref().map(parse_value);
                        match le {
                            Some(Ok(le)) => series.buckets.push((le, line.value)),
                            _ => series.buckets.push((f64::NAN, line.value)),
                        }
                    }
                    Some("_count") => series.count = Some(line.value),
                    Some("_sum") => series.sum = Some(line.value),
                    _ => {}
                }
            }
        }
        out
    }

    /// The value of the sample `name` whose labels include all of `labels`, summed
    /// over every match (0 when none).
    pub fn sum_of(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| f.lines.iter())
            .filter(|l| {
                l.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|l| l.value)
            .sum()
    }

    /// Whether a sample `name` with all of `labels` exists.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.families
            .values()
            .flat_map(|f| f.lines.iter())
            .any(|l| {
                l.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.labels.get(*k).map(String::as_str) == Some(*v))
            })
    }

    /// The rules one scrape must keep on its own: every histogram has a `+Inf`
    /// bucket equal to its `_count`, bounds increasing and counts non-decreasing.
    /// Returns every violation.
    pub fn histogram_violations(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, h) in self.histograms() {
            let Some(count) = h.count else {
                problems.push(format!("{key}: no _count"));
                continue;
            };
            match h.buckets.last() {
                Some((le, inf)) if le.is_infinite() && *le > 0.0 => {
                    if *inf != count {
                        problems.push(format!("{key}: _count {count} != +Inf bucket {inf}"));
                    }
                }
                _ => problems.push(format!("{key}: last bucket is not +Inf: {:?}", h.buckets)),
            }
            for pair in h.buckets.windows(2) {
                let ((le0, c0), (le1, c1)) = (pair[0], pair[1]);
                if le0.is_nan() || le1.is_nan() || le1 <= le0 {
                    problems.push(format!(
                        "{key}: bucket bounds not increasing: {le0} then {le1}"
                    ));
                }
                if c1 < c0 {
                    problems.push(format!(
                        "{key}: buckets not cumulative: le={le0} has {c0}, le={le1} has {c1}"
                    ));
                }
            }
            if h.sum.is_none() {
                problems.push(format!("{key}: no _sum"));
            }
        }
        problems
    }

    /// The rules between this scrape and the one before it (`previous`): no series
    /// disappears, and no counter, histogram bucket or `_count` goes down.
    pub fn regressions_since(&self, previous: &Scrape) -> Vec<String> {
        let mut problems = Vec::new();
        let now = self.counters();
        for (key, before) in previous.counters() {
            match now.get(&key) {
                None => problems.push(format!("counter {key} disappeared")),
                Some(after) if *after < before => {
                    problems.push(format!("counter {key} went down: {before} -> {after}"))
                }
                Some(_) => {}
            }
        }
        let now = self.histograms();
        for (key, before) in previous.histograms() {
            let Some(after) = now.get(&key) else {
                problems.push(format!("histogram {key} disappeared"));
                continue;
            };
            if after.count < before.count {
                problems.push(format!(
                    "histogram {key} _count went down: {:?} -> {:?}",
                    before.count, after.count
                ));
            }
            for ((le, c0), (_, c1)) in before.buckets.iter().zip(&after.buckets) {
                if c1 < c0 {
                    problems.push(format!(
                        "histogram {key} bucket le={le} went down: {c0} -> {c1}"
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_types_and_finds_violations() {
        let body = "# HELP a_total A.\n# TYPE a_total counter\n\
                    a_total{k=\"x\\\"y\\\\z\\nw\",o=\"ok\"} 3\n\
                    # TYPE h histogram\n\
                    h_bucket{le=\"0.1\"} 2\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 4\n\
                    h_sum 1.5\nh_count 5\n";
        let s = parse(body).unwrap();
        let counters = s.counters();
        assert_eq!(counters.len(), 1);
        let line = &s.families["a_total"].lines[0];
        assert_eq!(line.labels["k"], "x\"y\\z\nw");
        let v = s.histogram_violations();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().any(|p| p.contains("_count 5 != +Inf bucket 4")));
        assert!(v.iter().any(|p| p.contains("not cumulative")));

        let later = parse(&body.replace("} 3\n", "} 2\n")).unwrap();
        let r = later.regressions_since(&s);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(parse("orphan 1\n").is_err());
        assert!(parse("# TYPE x counter\nx{a=\"unterminated} 1\n").is_err());
    }
}
