//! Log subscribers. The console format for development; JSON and OTLP come with
//! the tracing issue.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::InitError;

/// Installs a console subscriber filtered by `RUST_LOG` (default `info`).
pub(crate) fn install_console() -> Result<(), InitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init()
        .map_err(|_| InitError::SubscriberAlreadyInstalled)
}
