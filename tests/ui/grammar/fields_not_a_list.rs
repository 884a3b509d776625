use zs_observe::instrumented;

#[instrumented(fields = "task_id")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
