//! The expansion is hygienic: it compiles without warnings under strict lints
//! (CI runs clippy over this file with `-D warnings`).
#![deny(warnings, clippy::all, clippy::pedantic)]
#![allow(clippy::unused_async)]

use zs_observe::instrumented;

#[derive(Debug)]
struct Store {
    items: Vec<u32>,
}

impl Store {
    #[instrumented(span = "store.get", counter = "lints_get_total", err, ret, log)]
    fn get(&self, index: usize) -> Result<u32, String> {
        self.items
            .get(index)
            .copied()
            .ok_or_else(|| format!("no item {index}"))
    }

    #[instrumented(
        histogram = "lints_push_duration_seconds",
        in_flight = "lints_pushing",
        skip(self),
        labels(kind = "push")
    )]
    fn push(&mut self, value: u32) {
        self.items.push(value);
    }

    #[instrumented(span = "store.flush", counter = "lints_flush_total", labels(size = if self.items.is_empty() { "empty" } else { "full" }))]
    async fn flush(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }
}

#[instrumented(span = false, counter = "lints_unit_total", outcome = false)]
fn unit() {}

#[test]
fn strict_lints_compile() {
    zs_observe_tests::install_recorder();
    let mut store = Store { items: Vec::new() };
    store.push(1);
    assert_eq!(store.get(0), Ok(1));
    assert!(store.get(9).is_err());
    unit();
    let n = futures::executor::block_on(store.flush());
    assert_eq!(n, 1);
    assert_eq!(
        zs_observe_tests::counter("lints_flush_total", &[("size", "full"), ("outcome", "ok")]),
        1
    );
}
