use zs_observe::instrumented;

#[instrumented(span = "Wasm.Execute")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
