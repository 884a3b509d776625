use zs_observe::instrumented;

#[instrumented(counter = "zerostate_payments_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
