use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_queue_count")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
