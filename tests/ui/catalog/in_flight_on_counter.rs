use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_p2p_messages_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
