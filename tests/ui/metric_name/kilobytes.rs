use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_cache_kb")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
