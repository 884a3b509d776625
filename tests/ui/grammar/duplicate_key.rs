use zs_observe::instrumented;

#[instrumented(counter = "a_total", counter = "b_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
