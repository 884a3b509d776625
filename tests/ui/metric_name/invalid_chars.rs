use zs_observe::instrumented;

#[instrumented(counter = "zerostate-tasks-total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
