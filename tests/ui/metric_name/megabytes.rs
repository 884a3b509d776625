use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_memory_mb")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
