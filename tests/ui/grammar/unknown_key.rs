use zs_observe::instrumented;

#[instrumented(span = "a.b", histgram = "x_duration_seconds")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
