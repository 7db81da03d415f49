//! The node's HTTP face: `/metrics`, `/healthz` and the JSON API under `/api`.
//! Handlers only read snapshots that conference tasks publish, or send them a
//! command: no handler ever holds a lock the media path waits on.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use tandem_mixer::ParticipantId;
use tandem_mixer::video::LayoutChoice;

use crate::bindings::{BindError, Cascades};
use crate::conference::ConferenceCommand;
use crate::metrics::Metrics;
use crate::registry::{ConferenceHandle, Registry};

#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub cascades: Arc<Cascades>,
    pub spans: Arc<crate::span::Spans>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(index))
        .route("/api/conferences", get(list_conferences))
        .route("/api/conferences/{id}", get(conference))
        .route("/api/conferences/{id}/participants/{pid}/mute", post(mute))
        .route(
            "/api/conferences/{id}/participants/{pid}/unmute",
            post(unmute),
        )
        .route("/api/conferences/{id}/layout", post(conference_layout))
        .route(
            "/api/conferences/{id}/cascade",
            put(bind_cascade).get(get_binding).delete(unbind_cascade),
        )
        .route("/api/cascade/bindings", get(list_bindings))
        .route(
            "/api/conferences/{id}/participants/{pid}/layout",
            post(participant_layout),
        )
        .merge(crate::span::api::routes())
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

/// `{"error":{"code":..,"message":..}}` with a 4xx/5xx status.
pub fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn index(State(s): State<ApiState>) -> impl IntoResponse {
    let mut body = String::from("Tandem MCU node\n\nconferences:\n");
    for c in s.registry.snapshots() {
        body.push_str(&format!(
            "  {}: {} participants, active speaker {}\n",
            c.id,
            c.participants.len(),
            c.active_speaker.as_deref().unwrap_or("-")
        ));
    }
    body.push_str("\nAPI: /api/conferences  metrics: /metrics\n");
    body
}

async fn list_conferences(State(s): State<ApiState>) -> impl IntoResponse {
    let mut all = s.registry.snapshots();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Json(all)
}

async fn conference(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match s.registry.snapshot(&id) {
        Some(c) => Json(c).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "unknown_conference",
            &format!("no conference {id} on this node"),
        ),
    }
}

#[derive(Deserialize, Default)]
struct MuteBody {
    #[serde(default)]
    muted: Option<bool>,
}

/// An API error on its way to [`api_error`]: small, so `Result`s stay cheap.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        api_error(self.status, self.code, &self.message)
    }
}

fn find_conference(s: &ApiState, id: &str) -> Result<ConferenceHandle, ApiError> {
    s.registry.handle(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_conference",
            format!("no conference {id} on this node"),
        )
    })
}

/// The conference and a participant of it, or the API error saying which is wrong.
fn find_participant(
    s: &ApiState,
    id: &str,
    pid: &str,
) -> Result<(ConferenceHandle, ParticipantId), ApiError> {
    let handle = find_conference(s, id)?;
    let Ok(participant) = pid.parse::<u64>() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_participant_id",
            "participant ids are numbers",
        ));
    };
    let known = handle
        .snapshot()
        .participants
        .iter()
        .any(|p| p.id == participant.to_string());
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_participant",
            format!("no participant {pid} in conference {id}"),
        ));
    }
    Ok((handle, ParticipantId(participant)))
}

async fn command(handle: &ConferenceHandle, cmd: ConferenceCommand) -> Result<(), ApiError> {
    handle.commands.send(cmd).await.map_err(|_| {
        ApiError::new(
            StatusCode::GONE,
            "conference_ended",
            "the conference just ended",
        )
    })
}

async fn set_mute(s: &ApiState, id: &str, pid: &str, muted: bool) -> Response {
    let (handle, participant) = match find_participant(s, id, pid) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = command(&handle, ConferenceCommand::Mute { participant, muted }).await {
        return e.into_response();
    }
    Json(json!({"participant": pid, "muted": muted})).into_response()
}

#[derive(Deserialize)]
struct LayoutBody {
    layout: String,
}

fn parse_layout(body: Option<Json<LayoutBody>>) -> Result<LayoutChoice, ApiError> {
    let Some(Json(body)) = body else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            r#"expected {"layout": "<name>"}"#,
        ));
    };
    body.layout.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_layout",
            format!(
                "unknown layout {:?}; one of auto, 1x1, 2x2, 3x3, 4x4, 5x5, 1+5, 1+7, 2+8, 1+21",
                body.layout
            ),
        )
    })
}

/// Sets a layout: the conference default (`pid` absent), for everyone
/// without a choice of their own, or one participant's.
async fn set_layout(
    s: &ApiState,
    id: &str,
    pid: Option<&str>,
    body: Option<Json<LayoutBody>>,
) -> Result<LayoutChoice, ApiError> {
    let layout = parse_layout(body)?;
    let (handle, participant) = match pid {
        Some(pid) => {
            let (h, p) = find_participant(s, id, pid)?;
            (h, Some(p))
        }
        None => (find_conference(s, id)?, None),
    };
    let cmd = ConferenceCommand::SetLayout {
        participant,
        layout,
    };
    command(&handle, cmd).await?;
    s.metrics
        .video
        .layout_changes
        .with_label_values(&["api"])
        .inc();
    Ok(layout)
}

/// `POST /api/conferences/{id}/layout {"layout":"2x2"}`.
async fn conference_layout(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Option<Json<LayoutBody>>,
) -> Response {
    match set_layout(&s, &id, None, body).await {
        Ok(layout) => Json(json!({"conference": id, "layout": layout.to_string()})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/conferences/{id}/participants/{pid}/layout {"layout":"1+5"}`.
async fn participant_layout(
    State(s): State<ApiState>,
    Path((id, pid)): Path<(String, String)>,
    body: Option<Json<LayoutBody>>,
) -> Response {
    match set_layout(&s, &id, Some(&pid), body).await {
        Ok(layout) => {
            Json(json!({"participant": pid, "layout": layout.to_string()})).into_response()
        }
        Err(e) => e.into_response(),
    }
}
async fn mute(
    State(s): State<ApiState>,
    Path((id, pid)): Path<(String, String)>,
    body: Option<Json<MuteBody>>,
) -> Response {
    let muted = body.and_then(|Json(b)| b.muted).unwrap_or(true);
    set_mute(&s, &id, &pid, muted).await
}

async fn unmute(State(s): State<ApiState>, Path((id, pid)): Path<(String, String)>) -> Response {
    set_mute(&s, &id, &pid, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindBody {
    room: u64,
    janus_url: Option<String>,
}

/// `PUT /api/conferences/{id}/cascade {"room":4711,"janus_url":"http://…/janus"}`:
/// the conference joins that native meeting (now, if it is running).
async fn bind_cascade(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<BindBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            r#"expected {"room": <number>, "janus_url": "<optional URL>"}"#,
        );
    };
    match s.cascades.bind(&id, Some(body.room), body.janus_url) {
        Ok(b) => Json(json!(b)).into_response(),
        Err(BindError::NoServer) => api_error(
            StatusCode::CONFLICT,
            "no_meeting_server",
            "no janus_url given and no [cascade] janus_url configured",
        ),
        Err(BindError::BadUrl) => api_error(
            StatusCode::BAD_REQUEST,
            "bad_url",
            "janus_url must be an http:// or https:// URL",
        ),
    }
}

/// `DELETE /api/conferences/{id}/cascade`: the conference joins no meeting
/// (even a numeric one); its agent leaves now.
async fn unbind_cascade(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match s.cascades.bind(&id, None, None) {
        Ok(_) => Json(json!({"conference": id, "bound": false})).into_response(),
        Err(_) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unbind failed",
        ),
    }
}

/// `GET /api/conferences/{id}/cascade`: the meeting it joins, if any.
async fn get_binding(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match s.cascades.binding(&id) {
        Some(b) => Json(json!(b)).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "not_bound",
            "this conference joins no native meeting",
        ),
    }
}

/// `GET /api/cascade/bindings`: the bindings set by the API or the config.
async fn list_bindings(State(s): State<ApiState>) -> Response {
    Json(json!(s.cascades.bindings())).into_response()
}

/// `tandem control`'s HTTP face: the control API, `/metrics` from its own
/// registry, `/healthz`, and JSON 404s.
pub fn control_router(api: Router, registry: prometheus::Registry) -> Router {
    let registry = Arc::new(registry);
    api.route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut buf = Vec::new();
                let _ = prometheus::Encoder::encode(
                    &prometheus::TextEncoder::new(),
                    &registry.gather(),
                    &mut buf,
                );
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    String::from_utf8(buf).unwrap_or_default(),
                )
            }
        }),
    )
    .route("/healthz", get(|| async { "ok\n" }))
    .fallback(|| async { api_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
}
