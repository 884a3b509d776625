//! Peer identities shared by the simulated network, the guilds and the economy.

use std::fmt;

/// A peer of the simulated ZeroState network. Displays as `peer-07`, the value of the
/// bounded `peer_id` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerId(pub(crate) u32);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer-{:02}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PeerId;

    #[test]
    fn displays_as_a_label_value() {
        assert_eq!(PeerId(7).to_string(), "peer-07");
        assert_eq!(PeerId(42).to_string(), "peer-42");
    }
}
