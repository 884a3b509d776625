use zs_observe::instrumented;

#[instrumented(counter = "a_total", labels(quantile = "0.5"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
