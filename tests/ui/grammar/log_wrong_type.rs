use zs_observe::instrumented;

#[instrumented(log = 5)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
