//! Call sites that agree with tests/ui/catalog/catalog.toml.
use zs_observe::instrumented;

#[instrumented(
    span = "wasm.execute",
    counter = "zerostate_tasks_total",
    histogram = "zerostate_wasm_execution_duration_seconds",
    in_flight = "zerostate_tasks_executing",
    labels(kind = "wasm")
)]
fn execute(module: &[u8]) -> Result<usize, String> {
    Ok(module.len())
}

#[instrumented(counter = "zerostate_p2p_messages_total", labels(peer_id = peer.to_string()))]
fn send(peer: u32) {}

#[instrumented(counter = "zerostate_receipts_total", outcome = false)]
fn receipt() {}

fn main() {
    let _ = execute(b"");
    send(1);
    receipt();
}
