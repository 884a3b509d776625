use zs_observe::instrumented;

#[instrumented(histogram = "zerostate_task_duration")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
