//! The embedded SQLite database: one connection behind a mutex, every statement
//! through [`Db::run`], which records `ains_db_*` and opens a `db.query` span.

use std::sync::Mutex;

use rusqlite::Connection;
use zs_observe::instrumented;

/// The statement kinds, the `operation` label of `ains_db_*` and the span's `db.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Select,
    Insert,
    Update,
    Delete,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Select => "select",
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// A database failure; its text goes to logs, never to clients.
#[derive(Debug)]
pub(crate) struct DbError(pub(crate) String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    trust_score REAL NOT NULL DEFAULT 0.5,
    last_heartbeat REAL NOT NULL,
    created_at REAL NOT NULL,
    api_key TEXT
);
CREATE TABLE IF NOT EXISTS chains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    steps TEXT NOT NULL,
    current_step INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    priority TEXT NOT NULL,
    interval_seconds INTEGER NOT NULL,
    next_run REAL NOT NULL,
    last_run REAL,
    runs INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    task_type TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    agent_id INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    chain_id INTEGER REFERENCES chains(id) ON DELETE CASCADE,
    step INTEGER,
    schedule_id INTEGER REFERENCES schedules(id) ON DELETE SET NULL,
    retries INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status, agent_id);
";

/// The database: one SQLite connection (in memory or a file).
pub(crate) struct Db {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Opens `path` (`:memory:` for an in-memory database) and creates the schema.
    pub(crate) fn open(path: &str) -> Result<Db, DbError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        conn.execute_batch(SCHEMA)?;
        // Database files created before agents had API keys.
        let has_key: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('agents') WHERE name = 'api_key'",
            [],
            |r| r.get(0),
        )?;
        if !has_key {
            conn.execute_batch("ALTER TABLE agents ADD COLUMN api_key TEXT;")?;
        }
        metrics::gauge!("ains_db_connections_max").set(1.0);
        metrics::gauge!("ains_db_connections_active").set(0.0);
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    /// Runs one statement (`f`) on the connection.
    #[instrumented(
        span = "db.query",
        level = "debug",
        counter = "ains_db_queries_total",
        histogram = "ains_db_query_duration_seconds",
        labels(operation = op.as_str()),
        fields(db.system = "sqlite", db.operation = op.as_str()),
        skip(self, op, f),
        err(level = "warn")
    )]
    pub(crate) fn run<T>(
        &self,
        op: Op,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| DbError("the connection's lock is poisoned".into()))?;
        let active = metrics::gauge!("ains_db_connections_active");
        active.set(1.0);
        let result = f(&conn);
        active.set(0.0);
        Ok(result?)
    }

    /// `SELECT 1`: the readiness check.
    pub(crate) fn ping(&self) -> Result<(), DbError> {
        let one: i64 = self.run(Op::Select, |c| c.query_row("SELECT 1", [], |r| r.get(0)))?;
        if one == 1 {
            Ok(())
        } else {
            Err(DbError(format!("SELECT 1 returned {one}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_memory_and_answers_ping() {
        let db = Db::open(":memory:").expect("opens");
        assert!(db.ping().is_ok());
        let n: i64 = db
            .run(Op::Select, |c| {
                c.query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
            })
            .expect("counts");
        assert_eq!(n, 0);
    }

    #[test]
    fn sql_errors_are_values() {
        let db = Db::open(":memory:").expect("opens");
        let err = db
            .run(Op::Select, |c| c.execute("SELECT * FROM nowhere", []))
            .expect_err("no such table");
        assert!(err.0.contains("nowhere"), "{err}");
    }
}
