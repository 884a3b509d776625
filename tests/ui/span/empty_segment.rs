use zs_observe::instrumented;

#[instrumented(span = "wasm..execute")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
