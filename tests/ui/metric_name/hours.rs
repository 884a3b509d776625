use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_uptime_hours")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
