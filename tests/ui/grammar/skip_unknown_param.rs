use zs_observe::instrumented;

#[instrumented(skip(pyload))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
