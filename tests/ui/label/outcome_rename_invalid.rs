use zs_observe::instrumented;

#[instrumented(counter = "a_total", outcome = "result-code")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
