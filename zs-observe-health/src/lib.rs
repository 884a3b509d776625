//! Health checks for zs-observe services.
//!
//! The check registry and the `/health/*` endpoints land with their own issue;
//! this crate is the placeholder the workspace layout asks for.

/// The status of a health check, in the `application/health+json` vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern.
    Warn,
    /// Unhealthy.
    Fail,
}
