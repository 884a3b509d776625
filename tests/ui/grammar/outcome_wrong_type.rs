use zs_observe::instrumented;

#[instrumented(counter = "a_total", outcome = 1)]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
