use zs_observe::instrumented;

#[instrumented(log(msg = "done"))]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
