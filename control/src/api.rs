//! The control plane's REST API: nodes, placements and meeting rooms, with an
//! OpenAPI description at `/api/openapi.json`. Errors are JSON:
//! `{"error":{"code":"...","message":"..."}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::metrics::ControlMetrics;
use crate::placement::{Placement, Placer};
use crate::store::{SharedStore, StoreError, keys};
use crate::vmr::{Vmr, valid_conference_id};

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
pub struct ControlApi {
    pub store: SharedStore,
    pub placer: Arc<Placer>,
    pub metrics: Arc<ControlMetrics>,
}

/// The routes, without a fallback (the node's API merges them in
/// `tandem up`).
pub fn router(api: ControlApi) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/nodes", get(nodes))
        .route("/api/placements", get(placements))
        .route(
            "/api/placements/{id}",
            get(placement).delete(forget_placement),
        )
        .route("/api/vmrs", get(list_vmrs).post(create_vmr))
        .route(
            "/api/vmrs/{id}",
            get(get_vmr).put(put_vmr).delete(delete_vmr),
        )
        .with_state(api)
}

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn counted(api: &ControlApi, e: ApiError) -> ApiError {
    api.metrics.api_errors.with_label_values(&[e.code]).inc();
    e
}

async fn openapi() -> impl IntoResponse {
    ([("content-type", "application/json")], OPENAPI)
}

async fn nodes(State(api): State<ControlApi>) -> Json<Value> {
    let list: Vec<Value> = api
        .placer
        .nodes()
        .into_iter()
        .map(|n| {
            json!({
                "name": n.name,
                "site": n.site,
                "sip": n.sip,
                "api": n.api,
                "span": n.span,
                "load": {
                    "participants": n.participants,
                    "max": n.max_participants,
                    "hd_participants": n.hd_participants,
                    "max_hd": n.hd_ports(),
                    "conferences": n.conferences.len(),
                    "cpu": n.cpu,
                },
                "draining": n.draining,
                "alive": true,
                "version": n.version,
            })
        })
        .collect();
    Json(Value::Array(list))
}

async fn placements(State(api): State<ControlApi>) -> ApiResult<Json<Vec<Placement>>> {
    Ok(Json(api.placer.placements().await?))
}

fn checked_id(api: &ControlApi, id: &str) -> ApiResult<()> {
    if valid_conference_id(id) {
        Ok(())
    } else {
        Err(counted(
            api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "id: 1 to 64 characters of letters, digits, '-', '_' or '.'",
            ),
        ))
    }
}

fn not_found(api: &ControlApi, what: &str, id: &str) -> ApiError {
    counted(
        api,
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} {id:?}"),
        ),
    )
}

async fn placement(
    State(api): State<ControlApi>,
    Path(id): Path<String>,
) -> ApiResult<Json<Placement>> {
    checked_id(&api, &id)?;
    let e = api
        .store
        .get(&keys::placement(&id))
        .await?
        .ok_or_else(|| not_found(&api, "placement for conference", &id))?;
    serde_json::from_slice(&e.value)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e.to_string()))
}

async fn forget_placement(
    State(api): State<ControlApi>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    checked_id(&api, &id)?;
    if api.store.delete(&keys::placement(&id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&api, "placement for conference", &id))
    }
}

async fn list_vmrs(State(api): State<ControlApi>) -> ApiResult<Json<Vec<Vmr>>> {
    let (entries, _) = api.store.list(keys::VMRS).await?;
    Ok(Json(
        entries
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.value).ok())
            .collect(),
    ))
}

/// A room from a request body: JSON, known fields only, valid values. The
/// path's ID fills in or must match the body's.
fn parse_vmr(api: &ControlApi, body: &[u8], path_id: Option<&str>) -> ApiResult<Vmr> {
    let bad = |m: String| {
        counted(
            api,
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m),
        )
    };
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(bad("body must be a JSON object".into()));
    };
    if let Some(id) = path_id {
        match obj.get("id") {
            None => {
                obj.insert("id".into(), Value::String(id.to_owned()));
            }
            Some(Value::String(b)) if b == id => {}
            Some(_) => {
                return Err(bad(format!(
                    "id in the body differs from the path's {id:?}"
                )));
            }
        }
    }
    let vmr: Vmr = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    vmr.validate().map_err(|e| {
        counted(
            api,
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        )
    })?;
    Ok(vmr)
}

async fn create_vmr(
    State(api): State<ControlApi>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Vmr>)> {
    let vmr = parse_vmr(&api, &body, None)?;
    let json = serde_json::to_vec(&vmr).unwrap_or_default();
    if api
        .store
        .compare_and_put(&keys::vmr(&vmr.id), 0, json, None)
        .await?
    {
        Ok((StatusCode::CREATED, Json(vmr)))
    } else {
        Err(counted(
            &api,
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "room {:?} exists (PUT /api/vmrs/{} replaces it)",
                    vmr.id, vmr.id
                ),
            ),
        ))
    }
}

async fn get_vmr(State(api): State<ControlApi>, Path(id): Path<String>) -> ApiResult<Json<Vmr>> {
    checked_id(&api, &id)?;
    let e = api
        .store
        .get(&keys::vmr(&id))
        .await?
        .ok_or_else(|| not_found(&api, "room", &id))?;
    serde_json::from_slice(&e.value)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e.to_string()))
}

async fn put_vmr(
    State(api): State<ControlApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Vmr>)> {
    checked_id(&api, &id)?;
    let vmr = parse_vmr(&api, &body, Some(&id))?;
    let existed = api.store.get(&keys::vmr(&id)).await?.is_some();
    api.store
        .put(
            &keys::vmr(&id),
            serde_json::to_vec(&vmr).unwrap_or_default(),
            None,
        )
        .await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(vmr)))
}

async fn delete_vmr(
    State(api): State<ControlApi>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    checked_id(&api, &id)?;
    if api.store.delete(&keys::vmr(&id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&api, "room", &id))
    }
}
