use zs_observe::instrumented;

#[instrumented(counter = "zerostateTasksTotal")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
