//! The console log format with light spans (unsampled `#[instrumented]` calls kept
//! out of the registry): each line names every span it is in, outermost first, with
//! its fields (a field recorded later comes last), as `tracing-subscriber`'s full
//! format lays them out. Every root loses the sampling roll here
//! (`ParentBasedAlwaysOff`), so every `#[instrumented]` span is a light one;
//! `user.span` is an ordinary registry span between two of them.

use zs_observe::Telemetry;
use zs_observe_tests::logs::CapturedLogs;

#[zs_observe::instrumented(
    span = "outer.op",
    counter = "lightc_outer_total",
    fields(job = "j1", late = tracing::field::Empty, password = "hunter2")
)]
fn outer(n: u64) -> u64 {
    tracing::Span::current().record("late", "filled");
    tracing::info!("in outer");
    let user = tracing::info_span!("user.span", u = 7);
    let r = user.in_scope(|| inner(n + 1).unwrap_or(0));
    tracing::warn!(note = "two\nlines", "outer again");
    r
}

#[zs_observe::instrumented(span = "inner.op", counter = "lightc_inner_total", err)]
fn inner(m: u64) -> Result<u64, String> {
    tracing::info!(depth = 2, "in inner");
    Ok(m * 10)
}

/// The one line holding `message`, without its timestamp.
fn line<'a>(text: &'a str, message: &str) -> &'a str {
    let found: Vec<&str> = text.lines().filter(|l| l.contains(message)).collect();
    assert_eq!(found.len(), 1, "one line with `{message}`:\n{text}");
    let (timestamp, rest) = found[0].split_once(' ').expect("a timestamp");
    assert!(
        timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "{timestamp}"
    );
    rest
}

#[test]
fn console_lines_name_light_and_registry_spans_in_order() {
    let logs = CapturedLogs::default();
    let _telemetry = Telemetry::builder()
        .with_service_name("lightconsole")
        .with_log_sink(logs.sink())
        .with_log_format(zs_observe::LogFormat::Console)
        .with_log_level("info")
        .with_sampler(zs_observe::TraceSampler::ParentBasedAlwaysOff)
        .install()
        .expect("install");

    assert_eq!(outer(1), 20);
    assert!(tracing::Span::current().is_none(), "no span left entered");

    let text = logs.text();
    let target = module_path!();
    assert_eq!(
        line(&text, "in outer"),
        format!(" INFO outer.op{{n=1 job=j1 password=[REDACTED] late=filled}}: {target}: in outer")
    );
    assert_eq!(
        line(&text, "in inner"),
        format!(
            " INFO outer.op{{n=1 job=j1 password=[REDACTED] late=filled}}:user.span{{u=7}}:\
             inner.op{{m=2}}: {target}: in inner depth=2"
        )
    );
    // A newline in a field is escaped: one event, one line.
    assert_eq!(
        line(&text, "outer again"),
        format!(
            " WARN outer.op{{n=1 job=j1 password=[REDACTED] late=filled}}: {target}: \
             outer again note=two\\nlines"
        )
    );
    // An event without a message: its fields follow the target directly.
    tracing::info!(alone = 1);
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.ends_with(&format!(" INFO {target}: alone=1"))),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
