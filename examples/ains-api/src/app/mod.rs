//! The AINS domain: tasks, agents, chains of task steps and scheduled tasks over the
//! database, the trust-score router and the scheduler's tick.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};
use zs_observe::instrumented;

use crate::cache::Cache;
use crate::db::{Db, DbError, Op};

mod agents;
mod chains;
mod schedules;
mod tasks;

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
    /// Whether the agent registered an API key (the key itself is never served).
    api_key_set: bool,
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
        let low = app.register_agent("low", 0.2, None).expect("agent");
        let high = app.register_agent("high", 0.9, Some("k")).expect("agent");
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
