use zs_observe::instrumented;

#[instrumented(counter = "a_total", labels(outcome = "ok"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
