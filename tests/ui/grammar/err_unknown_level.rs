use zs_observe::instrumented;

#[instrumented(err(level = "loud"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
