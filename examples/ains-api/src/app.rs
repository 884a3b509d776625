//! The AINS domain: tasks, agents, chains of task steps and scheduled tasks over the
//! database, the trust-score router and the scheduler's tick.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use zs_observe::instrumented;

use crate::cache::Cache;
use crate::db::{Db, DbError, Op};

/// Most rows one list request or one scheduler pass handles.
pub(crate) const MAX_BATCH: i64 = 500;

/// A domain failure; the API turns it into a 4xx or 500 with a JSON body.
#[derive(Debug)]
pub(crate) enum AppError {
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    Db(DbError),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::NotFound(what) => write!(f, "{what} not found"),
            AppError::BadRequest(why) | AppError::Conflict(why) => f.write_str(why),
            AppError::Db(e) => write!(f, "database error: {e}"),
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::Db(e)
    }
}

/// A task's priority: the `priority` label of `ains_tasks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    fn parse(s: &str) -> Priority {
        match s {
            "low" => Priority::Low,
            "high" => Priority::High,
            _ => Priority::Normal,
        }
    }
}

/// A task's status: pending → running → completed or failed; failed → pending is a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pending,
    Running,
    Completed,
    Failed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            _ => Status::Pending,
        }
    }
}

/// A task as stored and served.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Task {
    id: i64,
    title: String,
    task_type: String,
    priority: Priority,
    status: Status,
    agent_id: Option<i64>,
    chain_id: Option<i64>,
    step: Option<i64>,
    schedule_id: Option<i64>,
    retries: i64,
    created_at: f64,
    updated_at: f64,
}

const TASK_COLUMNS: &str = "id, title, task_type, priority, status, agent_id, chain_id, step, \
                            schedule_id, retries, created_at, updated_at";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: r.get(0)?,
        title: r.get(1)?,
        task_type: r.get(2)?,
        priority: Priority::parse(&r.get::<_, String>(3)?),
        status: Status::parse(&r.get::<_, String>(4)?),
        agent_id: r.get(5)?,
        chain_id: r.get(6)?,
        step: r.get(7)?,
        schedule_id: r.get(8)?,
        retries: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

/// A new task, from the API, a chain step or a scheduled run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTask {
    pub(crate) title: String,
    #[serde(default = "default_type")]
    pub(crate) task_type: String,
    #[serde(default)]
    pub(crate) priority: Priority,
    #[serde(skip)]
    pub(crate) chain: Option<(i64, i64)>,
    #[serde(skip)]
    pub(crate) schedule_id: Option<i64>,
}

fn default_type() -> String {
    "generic".to_owned()
}

/// An agent as stored and served.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Agent {
    id: i64,
    name: String,
    trust_score: f64,
    last_heartbeat: f64,
    active: bool,
    created_at: f64,
}

/// A chain and its steps' tasks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Chain {
    id: i64,
    name: String,
    status: String,
    steps: Vec<String>,
    current_step: i64,
    created_at: f64,
    finished_at: Option<f64>,
    tasks: Vec<Task>,
}

/// A scheduled task: creates a task every `interval_seconds`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Schedule {
    id: i64,
    title: String,
    priority: Priority,
    interval_seconds: i64,
    next_run: f64,
    last_run: Option<f64>,
    runs: i64,
}

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        title: r.get(1)?,
        priority: Priority::parse(&r.get::<_, String>(2)?),
        interval_seconds: r.get(3)?,
        next_run: r.get(4)?,
        last_run: r.get(5)?,
        runs: r.get(6)?,
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn check_text(what: &str, value: &str) -> Result<(), AppError> {
    if value.trim().is_empty() || value.len() > 200 {
        return Err(AppError::BadRequest(format!(
            "`{what}` must be 1 to 200 characters"
        )));
    }
    Ok(())
}

/// The service's state: database, cache and settings.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) cache: Cache,
    /// An agent without a heartbeat for this long gets no new tasks.
    pub(crate) agent_ttl: Duration,
    /// A task running for this long is marked failed.
    pub(crate) task_timeout: Duration,
}

impl App {
    pub(crate) fn new(db: Db, cache: Cache, agent_ttl: Duration, task_timeout: Duration) -> App {
        metrics::counter!("ains_task_retries_total").increment(0);
        metrics::counter!("ains_task_timeouts_total").increment(0);
        App {
            db,
            cache,
            agent_ttl,
            task_timeout,
        }
    }

    // --- tasks ------------------------------------------------------------------

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
    fn finish_task(&self, task: &Task, to: Status) -> Result<(), AppError> {
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

    fn forget_task(&self, task: &Task) {
        self.cache.invalidate(&format!("task:{}", task.id));
        if let Some(chain) = task.chain_id {
            self.cache.invalidate(&format!("chain:{chain}"));
        }
    }

    // --- routing ----------------------------------------------------------------

    /// The active agent with the highest trust score.
    fn best_agent(&self) -> Result<Option<(i64, f64)>, AppError> {
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
        let span = tracing::Span::current();
        span.record("agent.id", agent);
        span.record("agent.trust_score", trust);
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

    // --- agents -----------------------------------------------------------------

    /// Registers an agent; it is active (and gets tasks) right away.
    #[instrumented(
        span = "agent.register",
        counter = "ains_agent_registrations_total",
        skip(self),
        err(level = "info")
    )]
    pub(crate) fn register_agent(&self, name: &str, trust_score: f64) -> Result<Agent, AppError> {
        check_text("name", name)?;
        check_trust(trust_score)?;
        let t = now();
        let id = self.db.run(Op::Insert, |c| {
            c.execute(
                "INSERT INTO agents (name, trust_score, last_heartbeat, created_at) \
                 VALUES (?1, ?2, ?3, ?3)",
                params![name, trust_score, t],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        publish_trust(id, trust_score);
        tracing::info!(
            agent.id = id,
            agent.trust_score = trust_score,
            "agent registered"
        );
        self.refresh_gauges();
        self.agent(id)
    }

    /// Records a heartbeat with the agent's current trust score.
    #[instrumented(
        span = "agent.heartbeat",
        counter = "ains_agent_heartbeats_total",
        fields(agent.id = id, agent.trust_score = trust_score),
        skip(self, id, trust_score),
        err(level = "info")
    )]
    pub(crate) fn heartbeat(&self, id: i64, trust_score: f64) -> Result<Agent, AppError> {
        check_trust(trust_score)?;
        let changed = self.db.run(Op::Update, |c| {
            c.execute(
                "UPDATE agents SET trust_score = ?2, last_heartbeat = ?3 WHERE id = ?1",
                params![id, trust_score, now()],
            )
        })?;
        if changed == 0 {
            return Err(AppError::NotFound(format!("agent {id}")));
        }
        self.cache.invalidate(&format!("agent:{id}"));
        publish_trust(id, trust_score);
        self.refresh_gauges();
        self.agent(id)
    }

    fn agent_from_row(&self, r: &Row<'_>) -> rusqlite::Result<Agent> {
        let last: f64 = r.get(3)?;
        Ok(Agent {
            id: r.get(0)?,
            name: r.get(1)?,
            trust_score: r.get(2)?,
            last_heartbeat: last,
            active: last >= now() - self.agent_ttl.as_secs_f64(),
            created_at: r.get(4)?,
        })
    }

    /// The agent `id`.
    pub(crate) fn agent(&self, id: i64) -> Result<Agent, AppError> {
        self.db
            .run(Op::Select, |c| {
                c.query_row(
                    "SELECT id, name, trust_score, last_heartbeat, created_at FROM agents WHERE id = ?1",
                    [id],
                    |r| self.agent_from_row(r),
                )
                .optional()
            })?
            .ok_or_else(|| AppError::NotFound(format!("agent {id}")))
    }

    /// The agent `id` as JSON, from the cache when fresh (`active` may lag by the TTL).
    pub(crate) fn agent_json(&self, id: i64) -> Result<String, AppError> {
        let key = format!("agent:{id}");
        if let Some(body) = self.cache.get(&key) {
            return Ok(body);
        }
        let body = to_json(&self.agent(id)?)?;
        self.cache.put(key, body.clone());
        Ok(body)
    }

    /// Agents, most trusted first.
    pub(crate) fn agents(&self, limit: i64) -> Result<Vec<Agent>, AppError> {
        let limit = limit.clamp(1, MAX_BATCH);
        Ok(self.db.run(Op::Select, |c| {
            let mut stmt = c.prepare(
                "SELECT id, name, trust_score, last_heartbeat, created_at FROM agents \
                 ORDER BY trust_score DESC, id ASC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| self.agent_from_row(r))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?)
    }

    // --- chains -----------------------------------------------------------------

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
        tracing::Span::current().record("chain.id", id);
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
    fn advance_chain(&self, chain: i64, step: i64, status: Status) -> Result<(), AppError> {
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

    // --- scheduled tasks --------------------------------------------------------

    /// Defines a scheduled task, first due one interval from now.
    #[instrumented(span = "schedule.create", skip(self), err(level = "info"))]
    pub(crate) fn create_schedule(
        &self,
        title: &str,
        priority: Priority,
        interval_seconds: i64,
    ) -> Result<Schedule, AppError> {
        check_text("title", title)?;
        if !(1..=86_400 * 366).contains(&interval_seconds) {
            return Err(AppError::BadRequest(
                "`interval_seconds` must be between 1 and 31622400".into(),
            ));
        }
        let next = now() + interval_seconds as f64;
        let id = self.db.run(Op::Insert, |c| {
            c.execute(
                "INSERT INTO schedules (title, priority, interval_seconds, next_run) VALUES (?1, ?2, ?3, ?4)",
                params![title, priority.as_str(), interval_seconds, next],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        self.refresh_gauges();
        self.schedule(id)
    }

    fn schedule(&self, id: i64) -> Result<Schedule, AppError> {
        self.db
            .run(Op::Select, |c| {
                c.query_row(
                    "SELECT id, title, priority, interval_seconds, next_run, last_run, runs \
                     FROM schedules WHERE id = ?1",
                    [id],
                    schedule_from_row,
                )
                .optional()
            })?
            .ok_or_else(|| AppError::NotFound(format!("scheduled task {id}")))
    }

    /// Scheduled tasks, soonest due first.
    pub(crate) fn schedules(&self, limit: i64) -> Result<Vec<Schedule>, AppError> {
        let limit = limit.clamp(1, MAX_BATCH);
        Ok(self.db.run(Op::Select, |c| {
            let mut stmt = c.prepare(
                "SELECT id, title, priority, interval_seconds, next_run, last_run, runs \
                 FROM schedules ORDER BY next_run, id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], schedule_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?)
    }

    /// Runs one due scheduled task: creates its task and sets its next run.
    #[instrumented(
        span = "schedule.run",
        counter = "ains_scheduled_tasks_runs_total",
        fields(schedule.id = s.id),
        skip(self, s),
        err(level = "warn")
    )]
    fn run_schedule(&self, s: &Schedule) -> Result<i64, AppError> {
        let task = self.create_task(NewTask {
            title: s.title.clone(),
            task_type: "scheduled".into(),
            priority: s.priority,
            chain: None,
            schedule_id: Some(s.id),
        })?;
        let t = now();
        self.db.run(Op::Update, |c| {
            c.execute(
                "UPDATE schedules SET next_run = ?2, last_run = ?3, runs = runs + 1 WHERE id = ?1",
                params![s.id, t + s.interval_seconds as f64, t],
            )
        })?;
        let label = zs_observe::bounded_label(
            "ains_scheduled_tasks_last_run_timestamp_seconds",
            "schedule_id",
            s.id.to_string(),
        );
        metrics::gauge!("ains_scheduled_tasks_last_run_timestamp_seconds", "schedule_id" => label)
            .set(t);
        Ok(task.id)
    }

    // --- the scheduler's tick ---------------------------------------------------

    /// One pass of the background scheduler: runs due scheduled tasks, fails timed-out
    /// tasks, routes queued tasks, refreshes the gauges. Each step handles at most
    /// [`MAX_BATCH`] rows.
    #[instrumented(span = "scheduler.tick", level = "debug", skip(self))]
    pub(crate) fn tick(&self) -> Result<(), AppError> {
        let t = now();
        let due = self.db.run(Op::Select, |c| {
            let mut stmt = c.prepare(
                "SELECT id, title, priority, interval_seconds, next_run, last_run, runs \
                 FROM schedules WHERE next_run <= ?1 ORDER BY next_run LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![t, MAX_BATCH], schedule_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        for s in &due {
            let _ = self.run_schedule(s);
        }

        let deadline = t - self.task_timeout.as_secs_f64();
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'running' AND updated_at < ?1 LIMIT ?2"
        );
        let stale = self.db.run(Op::Select, |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params![deadline, MAX_BATCH], task_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        for task in &stale {
            tracing::warn!(task.id = task.id, "task timed out");
            metrics::counter!("ains_task_timeouts_total").increment(1);
            self.finish_task(task, Status::Failed)?;
        }

        if self.best_agent()?.is_some() {
            let queued = self.db.run(Op::Select, |c| {
                let mut stmt = c.prepare(
                    "SELECT id FROM tasks WHERE status = 'pending' AND agent_id IS NULL \
                     ORDER BY id LIMIT ?1",
                )?;
                let rows = stmt.query_map([MAX_BATCH], |r| r.get::<_, i64>(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?;
            for id in queued {
                let _ = self.route_task(id);
            }
        }
        self.refresh_gauges();
        Ok(())
    }

    /// Sets the state gauges from the database.
    pub(crate) fn refresh_gauges(&self) {
        let t = now();
        let since = t - self.agent_ttl.as_secs_f64();
        let counts = self.db.run(Op::Select, |c| {
            c.query_row(
                "SELECT \
                   (SELECT COUNT(*) FROM tasks WHERE status = 'pending' AND agent_id IS NULL), \
                   (SELECT COUNT(*) FROM agents), \
                   (SELECT COUNT(*) FROM agents WHERE last_heartbeat >= ?1), \
                   (SELECT COUNT(*) FROM schedules), \
                   (SELECT MIN(next_run) FROM schedules)",
                [since],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                    ))
                },
            )
        });
        if let Ok((queue, agents, active, schedules, next)) = counts {
            metrics::gauge!("ains_tasks_in_queue").set(queue as f64);
            metrics::gauge!("ains_agents_registered").set(agents as f64);
            metrics::gauge!("ains_agents_active").set(active as f64);
            metrics::gauge!("ains_scheduled_tasks").set(schedules as f64);
            metrics::gauge!("ains_scheduled_tasks_next_run_seconds")
                .set(next.map_or(0.0, |n| (n - t).max(0.0)));
        }
    }

    /// Counts for the detail health view.
    pub(crate) fn queue_depth(&self) -> Result<i64, AppError> {
        Ok(self.db.run(Op::Select, |c| {
            c.query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'pending' AND agent_id IS NULL",
                [],
                |r| r.get(0),
            )
        })?)
    }
}

fn check_trust(score: f64) -> Result<(), AppError> {
    if !(0.0..=1.0).contains(&score) {
        return Err(AppError::BadRequest(
            "`trust_score` must be between 0 and 1".into(),
        ));
    }
    Ok(())
}

fn publish_trust(agent: i64, score: f64) {
    let label = zs_observe::bounded_label("ains_agent_trust_score", "agent_id", agent.to_string());
    metrics::gauge!("ains_agent_trust_score", "agent_id" => label).set(score);
}

fn to_json<T: Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Db(DbError(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::new(
            Db::open(":memory:").expect("db"),
            Cache::new(16, Duration::from_secs(60)),
            Duration::from_secs(30),
            Duration::from_secs(300),
        )
    }

    fn new_task(title: &str) -> NewTask {
        NewTask {
            title: title.into(),
            task_type: "generic".into(),
            priority: Priority::High,
            chain: None,
            schedule_id: None,
        }
    }

    #[test]
    fn routes_to_the_most_trusted_active_agent() {
        let app = app();
        let queued = app.create_task(new_task("early")).expect("created");
        assert_eq!(queued.agent_id, None, "no agent yet: queued");
        let low = app.register_agent("low", 0.2).expect("agent");
        let high = app.register_agent("high", 0.9).expect("agent");
        let task = app.create_task(new_task("t")).expect("created");
        assert_eq!(task.agent_id, Some(high.id));
        app.heartbeat(low.id, 0.95).expect("heartbeat");
        let task = app.create_task(new_task("u")).expect("created");
        assert_eq!(task.agent_id, Some(low.id));
        app.tick().expect("tick");
        assert_eq!(app.task(queued.id).expect("task").agent_id, Some(low.id));
    }

    #[test]
    fn status_transitions_are_checked() {
        let app = app();
        let t = app.create_task(new_task("t")).expect("created");
        assert!(matches!(
            app.update_status(t.id, Status::Completed),
            Err(AppError::Conflict(_))
        ));
        app.update_status(t.id, Status::Running).expect("running");
        app.update_status(t.id, Status::Failed).expect("failed");
        let retried = app.update_status(t.id, Status::Pending).expect("retry");
        assert_eq!(retried.retries, 1);
        assert!(matches!(
            app.update_status(99, Status::Running),
            Err(AppError::NotFound(_))
        ));
    }

    #[test]
    fn chains_run_step_by_step() {
        let app = app();
        let chain = app
            .create_chain("c", vec!["a".into(), "b".into()])
            .expect("chain");
        assert_eq!(chain.tasks.len(), 1);
        let first = chain.tasks[0].id;
        app.update_status(first, Status::Running).expect("running");
        app.update_status(first, Status::Completed).expect("done");
        let chain = app.chain(chain.id).expect("chain");
        assert_eq!(chain.tasks.len(), 2);
        assert_eq!(chain.status, "running");
        let second = chain.tasks[1].id;
        app.update_status(second, Status::Running).expect("running");
        app.update_status(second, Status::Completed).expect("done");
        assert_eq!(app.chain(chain.id).expect("chain").status, "completed");
    }

    #[test]
    fn due_schedules_create_tasks() {
        let app = app();
        let s = app
            .create_schedule("s", Priority::Low, 1)
            .expect("schedule");
        app.db
            .run(Op::Update, |c| {
                c.execute("UPDATE schedules SET next_run = 0 WHERE id = ?1", [s.id])
            })
            .expect("made due");
        app.tick().expect("tick");
        let tasks = app.tasks(None, 10).expect("tasks");
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].schedule_id, Some(s.id));
        assert_eq!(app.schedule(s.id).expect("schedule").runs, 1);
    }
}
