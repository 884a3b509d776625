use zs_observe::instrumented;

#[instrumented(skip(payload), skip_all)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
