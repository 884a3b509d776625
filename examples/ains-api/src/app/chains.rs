//! Chains: task steps run one after the other.

use rusqlite::{params, OptionalExtension};
use zs_observe::instrumented;

use super::*;
use crate::db::Op;

impl App {
    /// Creates a chain of steps; the first step's task is created now, each next one
    /// when the previous completes.
    #[instrumented(
        span = "chain.create",
        counter = "ains_chains_total",
        fields(chain.id, chain.steps = steps.len()),
        skip(self, steps),
        err(level = "info")
    )]
    pub(crate) fn create_chain(&self, name: &str, steps: Vec<String>) -> Result<Chain, AppError> {
        check_text("name", name)?;
        if steps.is_empty() || steps.len() > 50 {
            return Err(AppError::BadRequest(
                "`steps` must hold 1 to 50 step titles".into(),
            ));
        }
        for s in &steps {
            check_text("steps[]", s)?;
        }
        let first = steps[0].clone();
        let encoded = to_json(&steps)?;
        let id = self.db.run(Op::Insert, |c| {
            c.execute(
                "INSERT INTO chains (name, status, steps, created_at) VALUES (?1, 'running', ?2, ?3)",
                params![name, encoded, now()],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        zs_observe::record_current("chain.id", id);
        self.create_task(NewTask {
            title: first,
            task_type: "chain_step".into(),
            priority: Priority::Normal,
            chain: Some((id, 0)),
            schedule_id: None,
        })?;
        self.chain(id)
    }

    /// Moves the chain on after its step `step` finished with `status`.
    #[instrumented(span = "chain.step", fields(chain.id = chain, chain.step = step), skip(self, chain, step, status))]
    pub(super) fn advance_chain(
        &self,
        chain: i64,
        step: i64,
        status: Status,
    ) -> Result<(), AppError> {
        let (steps, created_at): (String, f64) = self.db.run(Op::Select, |c| {
            c.query_row(
                "SELECT steps, created_at FROM chains WHERE id = ?1",
                [chain],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        let steps: Vec<String> = serde_json::from_str(&steps).unwrap_or_default();
        let step_status = if status == Status::Completed {
            "completed"
        } else {
            "failed"
        };
        metrics::counter!("ains_chain_steps_total", "status" => step_status).increment(1);
        let next = usize::try_from(step + 1).unwrap_or(usize::MAX);
        let t = now();
        if status == Status::Completed && next < steps.len() {
            self.db.run(Op::Update, |c| {
                c.execute(
                    "UPDATE chains SET current_step = ?2 WHERE id = ?1",
                    params![chain, step + 1],
                )
            })?;
            self.create_task(NewTask {
                title: steps[next].clone(),
                task_type: "chain_step".into(),
                priority: Priority::Normal,
                chain: Some((chain, step + 1)),
                schedule_id: None,
            })?;
        } else {
            self.db.run(Op::Update, |c| {
                c.execute(
                    "UPDATE chains SET status = ?2, finished_at = ?3 WHERE id = ?1",
                    params![chain, step_status, t],
                )
            })?;
            metrics::histogram!("ains_chain_duration_seconds", "status" => step_status)
                .record((t - created_at).max(0.0));
            tracing::info!(
                chain.id = chain,
                chain.status = step_status,
                "chain finished"
            );
        }
        self.cache.invalidate(&format!("chain:{chain}"));
        Ok(())
    }

    /// The chain `id` with its steps' tasks.
    pub(crate) fn chain(&self, id: i64) -> Result<Chain, AppError> {
        let row = self.db.run(Op::Select, |c| {
            c.query_row(
                "SELECT id, name, status, steps, current_step, created_at, finished_at \
                 FROM chains WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, Option<f64>>(6)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((id, name, status, steps, current_step, created_at, finished_at)) = row else {
            return Err(AppError::NotFound(format!("chain {id}")));
        };
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE chain_id = ?1 ORDER BY step, id");
        let tasks = self.db.run(Op::Select, |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([id], task_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Chain {
            id,
            name,
            status,
            steps: serde_json::from_str(&steps).unwrap_or_default(),
            current_step,
            created_at,
            finished_at,
            tasks,
        })
    }

    /// The chain `id` as JSON, from the cache when fresh.
    pub(crate) fn chain_json(&self, id: i64) -> Result<String, AppError> {
        let key = format!("chain:{id}");
        if let Some(body) = self.cache.get(&key) {
            return Ok(body);
        }
        let body = to_json(&self.chain(id)?)?;
        self.cache.put(key, body.clone());
        Ok(body)
    }
}
