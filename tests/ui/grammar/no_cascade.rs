use zs_observe::instrumented;

// Two mistakes in the attribute; the function is still emitted, so its callers
// compile and only the attribute's own errors are reported.
#[instrumented(counter = "zerostate_tasks", histgram = "x")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {
    let n: usize = handle(b"abc");
    assert_eq!(n, 3);
}
