use zs_observe::instrumented;

#[instrumented(level = "verbose")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
