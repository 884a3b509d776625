use zs_observe::instrumented;

#[instrumented(counter = "zerostate_gossip_rounds_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
