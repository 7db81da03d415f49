//! The node's HTTP face: `/metrics`, `/healthz` and the JSON API under `/api`.
//! Handlers only read snapshots that conference tasks publish, or send them a
//! command: no handler ever holds a lock the media path waits on.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::conference::ConferenceCommand;
use crate::metrics::Metrics;
use crate::registry::Registry;

#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
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

async fn set_mute(s: &ApiState, id: &str, pid: &str, muted: bool) -> Response {
    let Some(handle) = s.registry.handle(id) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "unknown_conference",
            &format!("no conference {id} on this node"),
        );
    };
    let Ok(participant) = pid.parse::<u64>() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_participant_id",
            "participant ids are numbers",
        );
    };
    let known = handle
        .snapshot()
        .participants
        .iter()
        .any(|p| p.id == participant.to_string());
    if !known {
        return api_error(
            StatusCode::NOT_FOUND,
            "unknown_participant",
            &format!("no participant {pid} in conference {id}"),
        );
    }
    let cmd = ConferenceCommand::Mute {
        participant: tandem_mixer::ParticipantId(participant),
        muted,
    };
    if handle.commands.send(cmd).await.is_err() {
        return api_error(
            StatusCode::GONE,
            "conference_ended",
            "the conference just ended",
        );
    }
    Json(json!({"participant": pid, "muted": muted})).into_response()
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
