use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_payment_sum")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
