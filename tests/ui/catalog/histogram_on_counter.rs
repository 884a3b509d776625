use zs_observe::instrumented;

#[instrumented(histogram = "zerostate_tasks_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
