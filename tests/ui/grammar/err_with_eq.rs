use zs_observe::instrumented;

#[instrumented(err = true)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
