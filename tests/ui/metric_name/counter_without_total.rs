use zs_observe::instrumented;

#[instrumented(counter = "zerostate_tasks")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
