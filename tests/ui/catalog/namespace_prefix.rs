use zs_observe::instrumented;

#[instrumented(counter = "tasks_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
