//! Agents: registration, heartbeats with trust scores.

use rusqlite::{params, OptionalExtension};
use zs_observe::instrumented;

use super::*;
use crate::db::Op;

impl App {
    /// Registers an agent; it is active (and gets tasks) right away. Its parameters are
    /// span fields, `api_key` included: the runtime redacts it in logs and spans.
    #[instrumented(
        span = "agent.register",
        counter = "ains_agent_registrations_total",
        skip(self),
        err(level = "info")
    )]
    pub(crate) fn register_agent(
        &self,
        name: &str,
        trust_score: f64,
        api_key: Option<&str>,
    ) -> Result<Agent, AppError> {
        check_text("name", name)?;
        check_trust(trust_score)?;
        if let Some(key) = api_key {
            check_text("api_key", key)?;
        }
        let t = now();
        let id = self.db.run(Op::Insert, |c| {
            c.execute(
                "INSERT INTO agents (name, trust_score, last_heartbeat, created_at, api_key) \
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![name, trust_score, t, api_key],
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

    pub(super) fn agent_from_row(&self, r: &Row<'_>) -> rusqlite::Result<Agent> {
        let last: f64 = r.get(3)?;
        Ok(Agent {
            id: r.get(0)?,
            name: r.get(1)?,
            trust_score: r.get(2)?,
            last_heartbeat: last,
            active: last >= now() - self.agent_ttl.as_secs_f64(),
            api_key_set: r.get(5)?,
            created_at: r.get(4)?,
        })
    }

    /// The agent `id`.
    pub(crate) fn agent(&self, id: i64) -> Result<Agent, AppError> {
        self.db
            .run(Op::Select, |c| {
                c.query_row(
                    "SELECT id, name, trust_score, last_heartbeat, created_at, api_key IS NOT NULL FROM agents WHERE id = ?1",
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
                "SELECT id, name, trust_score, last_heartbeat, created_at, api_key IS NOT NULL FROM agents \
                 ORDER BY trust_score DESC, id ASC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| self.agent_from_row(r))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?)
    }
}
