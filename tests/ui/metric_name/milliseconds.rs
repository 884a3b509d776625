use zs_observe::instrumented;

#[instrumented(histogram = "zerostate_latency_ms")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
