use zs_observe::instrumented;

#[instrumented(counter = "zerostate_wasm_execution_duration_seconds")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
