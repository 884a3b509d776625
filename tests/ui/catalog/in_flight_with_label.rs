use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_tasks_executing", labels(kind = "wasm", region = "eu"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
