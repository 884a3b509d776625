use zs_observe::instrumented;

#[instrumented(counter = "a_total", labels(kind = ""))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
