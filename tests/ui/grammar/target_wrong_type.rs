use zs_observe::instrumented;

#[instrumented(target = zerostate)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
