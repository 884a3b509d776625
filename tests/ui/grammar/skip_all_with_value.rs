use zs_observe::instrumented;

#[instrumented(skip_all = true)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
