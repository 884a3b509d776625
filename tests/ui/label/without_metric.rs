use zs_observe::instrumented;

#[instrumented(labels(kind = "a"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
