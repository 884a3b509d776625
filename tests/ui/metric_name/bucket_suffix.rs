use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_queue_bucket")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
