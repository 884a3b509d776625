//! Key combinations that must compile.
use zs_observe::instrumented;

#[derive(Debug)]
struct Node;

impl Node {
    #[instrumented(span = "guild.create", counter = "zerostate_guilds_created_total", histogram = "zerostate_guild_create_duration_seconds", in_flight = "zerostate_guilds_creating", labels(region = "eu", kind = kind.to_string()), outcome = "result", fields(guild.name = %name), skip(self), level = "debug", target = "zerostate::guilds", err(Debug), ret, log(message = "guild created", level = "info"))]
    fn create(&self, name: &str, kind: u8) -> Result<u64, String> {
        Ok(name.len() as u64 + u64::from(kind))
    }

    #[instrumented(span = false, counter = "zerostate_pings_total", outcome = false, skip_all)]
    async fn ping(&mut self) {}

    #[instrumented(log = "closed")]
    fn close(self) -> impl Iterator<Item = u8> {
        0..3
    }
}

#[instrumented(level = tracing::Level::WARN, counter = "zerostate_generic_total")]
fn generic<T: std::fmt::Debug + Clone>(value: &T) -> T {
    value.clone()
}

fn main() {
    let mut node = Node;
    let _ = node.create("g", 1);
    let _ = node.ping();
    let _ = generic(&3u8);
    let _ = node.close();
}
