use zs_observe::instrumented;

#[instrumented(histgram = "x", counter = "tasks", span = "Wasm Execute", labels(le = "1"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
