use zs_observe::instrumented;

#[instrumented(skip = payload)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
