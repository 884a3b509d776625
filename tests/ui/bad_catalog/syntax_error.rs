use zs_observe::instrumented;

#[instrumented(counter = "zerostate_tasks_total", outcome = false)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
