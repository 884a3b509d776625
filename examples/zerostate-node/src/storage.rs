//! The node's storage: signed receipts appended as JSON lines to
//! `<data dir>/receipts.jsonl`, rotated to `receipts.jsonl.1` past a size bound so a
//! long-running node never fills its disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::receipt::SignedReceipt;

/// Size of the receipt log at which it is rotated.
const ROTATE_AT_BYTES: u64 = 8 * 1024 * 1024;

/// The receipt log.
#[derive(Debug)]
pub(crate) struct Storage {
    dir: PathBuf,
    log: Mutex<Log>,
}

#[derive(Debug)]
struct Log {
    file: File,
    bytes: u64,
}

impl Storage {
    /// Creates `dir` if needed and opens its receipt log for appending.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = open_log(dir)?;
        let bytes = file.metadata()?.len();
        Ok(Storage {
            dir: dir.to_owned(),
            log: Mutex::new(Log { file, bytes }),
        })
    }

    /// The directory the node stores into (the `storage` health check probes it).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one receipt as a JSON line.
    pub(crate) fn append(&self, receipt: &SignedReceipt) -> io::Result<()> {
        let mut line = serde_json::to_vec(receipt).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut log = self
            .log
            .lock()
            .map_err(|_| io::Error::other("receipt log lock poisoned"))?;
        if log.bytes + line.len() as u64 > ROTATE_AT_BYTES {
            std::fs::rename(self.dir.join(LOG), self.dir.join(format!("{LOG}.1")))?;
            log.file = open_log(&self.dir)?;
            log.bytes = 0;
        }
        log.file.write_all(&line)?;
        log.bytes += line.len() as u64;
        Ok(())
    }
}

const LOG: &str = "receipts.jsonl";

fn open_log(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG))
}
