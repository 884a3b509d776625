use zs_observe::instrumented;

#[instrumented(counter = "job:zerostate_tasks:total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
