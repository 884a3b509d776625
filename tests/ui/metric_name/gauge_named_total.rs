use zs_observe::instrumented;

#[instrumented(in_flight = "zerostate_guild_total")]
fn handle(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
