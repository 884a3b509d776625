use zs_observe::instrumented;

#[instrumented]
struct NotAFunction;

fn main() {}
