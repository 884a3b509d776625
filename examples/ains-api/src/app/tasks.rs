//! Tasks and their routing to the most trusted active agent.

use rusqlite::{params, OptionalExtension};
use zs_observe::instrumented;

use super::*;
use crate::db::Op;

impl App {
    /// Stores a new pending task and routes it to the most trusted active agent.
    #[instrumented(
        span = "task.create",
        counter = "ains_tasks_total",
        labels(priority = new.priority.as_str()),
        fields(task.type = %new.task_type, task.priority = new.priority.as_str()),
        skip(self, new),
        err(level = "info")
    )]
    pub(crate) fn create_task(&self, new: NewTask) -> Result<Task, AppError> {
        check_text("title", &new.title)?;
        check_text("task_type", &new.task_type)?;
        let t = now();
        let (chain_id, step) = match new.chain {
            Some((c, s)) => (Some(c), Some(s)),
            None => (None, None),
        };
        let id = self.db.run(Op::Insert, |c| {
            c.execute(
                "INSERT INTO tasks (title, task_type, priority, status, chain_id, step, \
                 schedule_id, created_at, updated_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?7)",
                params![new.title, new.task_type, new.priority.as_str(), chain_id, step, new.schedule_id, t],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        tracing::info!(task.id = id, task.type = %new.task_type, "task created");
        if let Err(e) = self.route_task(id) {
            tracing::debug!(task.id = id, error = %e, "task queued");
        }
        self.refresh_gauges();
        self.task(id)
    }

    /// The task `id`, from the database.
    pub(crate) fn task(&self, id: i64) -> Result<Task, AppError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
        self.db
            .run(Op::Select, |c| {
                c.query_row(&sql, [id], task_from_row).optional()
            })?
            .ok_or_else(|| AppError::NotFound(format!("task {id}")))
    }

    /// The task `id` as JSON, from the cache when fresh.
    pub(crate) fn task_json(&self, id: i64) -> Result<String, AppError> {
        let key = format!("task:{id}");
        if let Some(body) = self.cache.get(&key) {
            return Ok(body);
        }
        let body = to_json(&self.task(id)?)?;
        self.cache.put(key, body.clone());
        Ok(body)
    }

    /// Tasks, newest first, optionally of one status.
    pub(crate) fn tasks(&self, status: Option<Status>, limit: i64) -> Result<Vec<Task>, AppError> {
        let limit = limit.clamp(1, MAX_BATCH);
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR status = ?1) \
             ORDER BY id DESC LIMIT ?2"
        );
        let status = status.map(Status::as_str);
        Ok(self.db.run(Op::Select, |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params![status, limit], task_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?)
    }

    /// Moves the task `id` to `to`, if the transition is allowed.
    #[instrumented(
        span = "task.update_status",
        counter = "ains_task_status_updates_total",
        labels(status = to.as_str()),
        fields(task.id = id, task.status = to.as_str()),
        skip(self, id, to),
        err(level = "info")
    )]
    pub(crate) fn update_status(&self, id: i64, to: Status) -> Result<Task, AppError> {
        let task = self.task(id)?;
        let allowed = matches!(
            (task.status, to),
            (Status::Pending, Status::Running)
                | (Status::Pending, Status::Failed)
                | (Status::Running, Status::Completed)
                | (Status::Running, Status::Failed)
                | (Status::Failed, Status::Pending)
        );
        if !allowed {
            return Err(AppError::Conflict(format!(
                "task {id} cannot go from {} to {}",
                task.status.as_str(),
                to.as_str()
            )));
        }
        if task.status == Status::Failed && task.chain_id.is_some() {
            return Err(AppError::Conflict(format!(
                "task {id} is a failed chain step; create a new chain"
            )));
        }
        match to {
            Status::Completed | Status::Failed => self.finish_task(&task, to)?,
            Status::Pending => {
                // A retry: back in the queue, routed again.
                self.db.run(Op::Update, |c| {
                    c.execute(
                        "UPDATE tasks SET status = 'pending', agent_id = NULL, \
                         retries = retries + 1, updated_at = ?2 WHERE id = ?1",
                        params![id, now()],
                    )
                })?;
                metrics::counter!("ains_task_retries_total").increment(1);
                self.forget_task(&task);
                let _ = self.route_task(id);
            }
            Status::Running => {
                self.db.run(Op::Update, |c| {
                    c.execute(
                        "UPDATE tasks SET status = 'running', updated_at = ?2 WHERE id = ?1",
                        params![id, now()],
                    )
                })?;
                self.forget_task(&task);
            }
        }
        self.refresh_gauges();
        self.task(id)
    }

    /// Deletes the task `id`.
    #[instrumented(span = "task.delete", fields(task.id = id), skip(self, id), err(level = "info"))]
    pub(crate) fn delete_task(&self, id: i64) -> Result<(), AppError> {
        let task = self.task(id)?;
        self.db.run(Op::Delete, |c| {
            c.execute("DELETE FROM tasks WHERE id = ?1", [id])
        })?;
        self.forget_task(&task);
        self.refresh_gauges();
        Ok(())
    }

    /// Marks `task` completed or failed, records its duration and advances its chain.
    pub(super) fn finish_task(&self, task: &Task, to: Status) -> Result<(), AppError> {
        let t = now();
        self.db.run(Op::Update, |c| {
            c.execute(
                "UPDATE tasks SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![task.id, to.as_str(), t],
            )
        })?;
        self.forget_task(task);
        metrics::histogram!("ains_tasks_duration_seconds", "status" => to.as_str())
            .record((t - task.created_at).max(0.0));
        if let (Status::Completed, Some(agent)) = (to, task.agent_id) {
            let label = zs_observe::bounded_label(
                "ains_agent_tasks_completed_total",
                "agent_id",
                agent.to_string(),
            );
            metrics::counter!("ains_agent_tasks_completed_total", "agent_id" => label).increment(1);
        }
        tracing::info!(
            task.id = task.id,
            task.status = to.as_str(),
            agent.id = task.agent_id,
            "task finished"
        );
        if let (Some(chain), Some(step)) = (task.chain_id, task.step) {
            self.advance_chain(chain, step, to)?;
        }
        Ok(())
    }

    pub(super) fn forget_task(&self, task: &Task) {
        self.cache.invalidate(&format!("task:{}", task.id));
        if let Some(chain) = task.chain_id {
            self.cache.invalidate(&format!("chain:{chain}"));
        }
    }

    /// The active agent with the highest trust score.
    pub(super) fn best_agent(&self) -> Result<Option<(i64, f64)>, AppError> {
        let since = now() - self.agent_ttl.as_secs_f64();
        Ok(self.db.run(Op::Select, |c| {
            c.query_row(
                "SELECT id, trust_score FROM agents WHERE last_heartbeat >= ?1 \
                 ORDER BY trust_score DESC, id ASC LIMIT 1",
                [since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?)
    }

    /// Assigns the pending task `id` to the most trusted active agent.
    #[instrumented(
        span = "task.route",
        counter = "ains_task_routing_total",
        fields(task.id = id, task.routing_strategy = "highest_trust", agent.id, agent.trust_score),
        skip(self, id)
    )]
    pub(crate) fn route_task(&self, id: i64) -> Result<i64, AppError> {
        let Some((agent, trust)) = self.best_agent()? else {
            return Err(AppError::Conflict("no active agent".into()));
        };
        zs_observe::record_current("agent.id", agent);
        zs_observe::record_current("agent.trust_score", trust);
        self.db.run(Op::Update, |c| {
            c.execute(
                "UPDATE tasks SET agent_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, agent, now()],
            )
        })?;
        self.cache.invalidate(&format!("task:{id}"));
        tracing::info!(
            task.id = id,
            agent.id = agent,
            agent.trust_score = trust,
            "task assigned to agent"
        );
        Ok(agent)
    }
}
