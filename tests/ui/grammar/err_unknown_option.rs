use zs_observe::instrumented;

#[instrumented(err(Pretty))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
