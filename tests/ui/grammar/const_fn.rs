use zs_observe::instrumented;

#[instrumented(counter = "a_total")]
const fn answer() -> u8 { 42 }

fn main() {}
