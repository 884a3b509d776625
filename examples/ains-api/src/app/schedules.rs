//! Scheduled tasks: a task every interval.

use rusqlite::{params, OptionalExtension};
use zs_observe::instrumented;

use super::*;
use crate::db::Op;

impl App {
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

    pub(super) fn schedule(&self, id: i64) -> Result<Schedule, AppError> {
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
    pub(super) fn run_schedule(&self, s: &Schedule) -> Result<i64, AppError> {
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
}
