use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_uptime_minutes")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
