use zs_observe::instrumented;

#[instrumented(span = 42)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
