use zs_observe::instrumented;

#[instrumented(counter = "zerostate_task_total", labels(kind = "wasm"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
