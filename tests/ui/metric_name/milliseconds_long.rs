use zs_observe::instrumented;

#[instrumented(histogram = "zerostate_latency_milliseconds")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
