//! The REST API: routes, request bodies and JSON errors.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use zs_observe::instrumented;

use crate::app::{App, AppError, NewTask, Priority, Status};

/// Largest request body accepted; larger ones get 413.
pub(crate) const BODY_LIMIT: usize = 16 * 1024;

/// An error answer: a status and `{"error": reason}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.reason })),
        )
            .into_response()
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            AppError::BadRequest(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            AppError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AppError::Db(ref db) => {
                tracing::error!(error = %db, "database error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

type Result<T> = std::result::Result<T, ApiError>;

fn json_body(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn parse_id(raw: &str, what: &str) -> Result<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("{what} {raw} not found")))
}

/// The API's routes (without health and metrics).
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/tasks", post(create_task).get(list_tasks))
        .route("/tasks/{id}", get(get_task).delete(delete_task))
        .route("/tasks/{id}/status", put(update_status))
        .route("/agents", post(register_agent).get(list_agents))
        .route("/agents/{id}", get(get_agent))
        .route("/agents/{id}/heartbeat", post(heartbeat))
        .route("/chains", post(create_chain))
        .route("/chains/{id}", get(get_chain))
        .route(
            "/scheduled-tasks",
            post(create_schedule).get(list_schedules),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

async fn index() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "service": "ains-api",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": [
            "/tasks", "/tasks/{id}", "/tasks/{id}/status", "/agents", "/agents/{id}",
            "/agents/{id}/heartbeat", "/chains", "/chains/{id}", "/scheduled-tasks",
            "/metrics", "/health/live", "/health/ready", "/health/startup", "/health/detail"
        ],
    }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<Status>,
    limit: Option<i64>,
}

#[instrumented(span = "api.tasks.create", skip_all)]
async fn create_task(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<NewTask>, JsonRejection>,
) -> Result<Response> {
    let Json(new) = body?;
    let task = app.create_task(new)?;
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

#[instrumented(span = "api.tasks.list", skip_all)]
async fn list_tasks(
    State(app): State<Arc<App>>,
    query: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = query?;
    let tasks = app.tasks(q.status, q.limit.unwrap_or(50))?;
    Ok(Json(tasks).into_response())
}

#[instrumented(span = "api.tasks.get", skip_all, fields(task.id = %id))]
async fn get_task(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "task")?;
    Ok(json_body(StatusCode::OK, app.task_json(id)?))
}

#[instrumented(span = "api.tasks.delete", skip_all, fields(task.id = %id))]
async fn delete_task(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "task")?;
    app.delete_task(id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: Status,
}

#[instrumented(span = "api.tasks.update_status", skip_all, fields(task.id = %id))]
async fn update_status(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<StatusBody>, JsonRejection>,
) -> Result<Response> {
    let id = parse_id(&id, "task")?;
    let Json(body) = body?;
    Ok(Json(app.update_status(id, body.status)?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAgent {
    name: String,
    #[serde(default = "half")]
    trust_score: f64,
    /// The agent's credential; stored, never served, redacted in logs and spans.
    #[serde(default)]
    api_key: Option<String>,
}

fn half() -> f64 {
    0.5
}

#[instrumented(span = "api.agents.register", skip_all)]
async fn register_agent(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<NewAgent>, JsonRejection>,
) -> Result<Response> {
    let Json(new) = body?;
    let agent = app.register_agent(&new.name, new.trust_score, new.api_key.as_deref())?;
    Ok((StatusCode::CREATED, Json(agent)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<i64>,
}

#[instrumented(span = "api.agents.list", skip_all)]
async fn list_agents(
    State(app): State<Arc<App>>,
    query: std::result::Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = query?;
    Ok(Json(app.agents(q.limit.unwrap_or(50))?).into_response())
}

#[instrumented(span = "api.agents.get", skip_all, fields(agent.id = %id))]
async fn get_agent(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "agent")?;
    Ok(json_body(StatusCode::OK, app.agent_json(id)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    trust_score: f64,
}

#[instrumented(span = "api.agents.heartbeat", skip_all, fields(agent.id = %id))]
async fn heartbeat(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<Heartbeat>, JsonRejection>,
) -> Result<Response> {
    let id = parse_id(&id, "agent")?;
    let Json(body) = body?;
    Ok(Json(app.heartbeat(id, body.trust_score)?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChain {
    name: String,
    steps: Vec<String>,
}

#[instrumented(span = "api.chains.create", skip_all)]
async fn create_chain(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<NewChain>, JsonRejection>,
) -> Result<Response> {
    let Json(new) = body?;
    let chain = app.create_chain(&new.name, new.steps)?;
    Ok((StatusCode::CREATED, Json(chain)).into_response())
}

#[instrumented(span = "api.chains.get", skip_all, fields(chain.id = %id))]
async fn get_chain(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id, "chain")?;
    Ok(json_body(StatusCode::OK, app.chain_json(id)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSchedule {
    title: String,
    interval_seconds: i64,
    #[serde(default)]
    priority: Priority,
}

#[instrumented(span = "api.scheduled_tasks.create", skip_all)]
async fn create_schedule(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<NewSchedule>, JsonRejection>,
) -> Result<Response> {
    let Json(new) = body?;
    let s = app.create_schedule(&new.title, new.priority, new.interval_seconds)?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

#[instrumented(span = "api.scheduled_tasks.list", skip_all)]
async fn list_schedules(
    State(app): State<Arc<App>>,
    query: std::result::Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = query?;
    Ok(Json(app.schedules(q.limit.unwrap_or(50))?).into_response())
}
