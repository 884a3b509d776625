use zs_observe::instrumented;

#[instrumented(counter = "zerostate_tasks_total", labels(kind = "wasm", region = "eu"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
