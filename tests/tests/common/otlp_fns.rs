//! Instrumented functions of the OTLP tests (see `zs_observe_tests::otlp::Calls`).

use zs_observe_tests::otlp::{Calls, PLANTED_SECRET};

#[zs_observe::instrumented(
    span = "payment.send",
    counter = "otlp_test_payments_total",
    fields(channel = %channel, api_key = PLANTED_SECRET),
    err
)]
fn send_payment(channel: &str, amount: u64) -> Result<u64, String> {
    if amount == 0 {
        return Err(format!("amount must be positive on channel {channel}"));
    }
    Ok(amount)
}

#[zs_observe::instrumented(span = "wasm.execute", histogram = "otlp_test_wasm_duration_seconds")]
fn execute(fuel: u64) -> u64 {
    let _ = send_payment("ch-inner", fuel);
    fuel * 2
}

/// The functions above, for the scenarios.
pub(crate) const CALLS: Calls = Calls {
    execute,
    send_payment,
};
