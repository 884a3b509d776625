use zs_observe::instrumented;

#[instrumented(histogram = "zerostate_wasm_execution_duration_seconds", labels(kind = "wasm"), outcome = "result")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
