//! The web services over HTTP (axum), at the blueprint's addresses:
//! `POST /sahana/admin/call/jsonrpc` (`{"method", "params", "id"}` in,
//! `{"result", "error", "id"}` out) and `/sahana/admin/call/json/<function>`
//! (GET with query parameters, or POST with a JSON object or list of arguments).
//! Store work runs on the blocking pool; the service serialises it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{Args, CallError, Service};

/// Largest request body: a putdata of a whole station's tables fits.
pub const MAX_BODY: usize = 64 << 20;

/// The JSON-RPC address, as the blueprint's client names it.
pub const JSONRPC_PATH: &str = "/sahana/admin/call/jsonrpc";

/// The router serving `service`.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route(JSONRPC_PATH, post(jsonrpc))
        .route(
            "/sahana/admin/call/json/{function}",
            get(json_get).post(json_post),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

/// Serves `service` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(service).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn run_call(
    service: Arc<Service>,
    from: SocketAddr,
    method: String,
    args: Args,
) -> Result<Value, CallError> {
    let ip = from.ip();
    tokio::task::spawn_blocking(move || service.call(ip, Instant::now(), &method, &args))
        .await
        .unwrap_or_else(|e| {
            Err(CallError {
                code: -32603,
                message: format!("internal error: {e}"),
            })
        })
}

fn args_of(params: Option<Value>) -> Result<Args, CallError> {
    match params {
        None | Some(Value::Null) => Ok(Args::Positional(Vec::new())),
        Some(Value::Array(v)) => Ok(Args::Positional(v)),
        Some(Value::Object(m)) => Ok(Args::Named(m)),
        Some(_) => Err(CallError {
            code: -32602,
            message: "params must be a list or an object".into(),
        }),
    }
}

async fn jsonrpc(
    State(service): State<Arc<Service>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Json<Value> {
    let reply = |result: Value, error: Value, id: Value| {
        Json(json!({"result": result, "error": error, "id": id}))
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                Value::Null,
                json!({"code": -32700, "message": format!("parse error: {e}")}),
                Value::Null,
            )
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return reply(
            Value::Null,
            json!({"code": -32600, "message": "the request has no method"}),
            id,
        );
    };
    let outcome = match args_of(request.get("params").cloned()) {
        Ok(args) => run_call(service, from, method.to_string(), args).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(result) => reply(result, Value::Null, id),
        Err(e) => reply(
            Value::Null,
            json!({"code": e.code, "message": e.message}),
            id,
        ),
    }
}

fn json_reply(outcome: Result<Value, CallError>) -> Response {
    match outcome {
        Ok(result) => Json(result).into_response(),
        Err(e) => (
            if e.code == -32601 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            },
            Json(json!({"error": e.message})),
        )
            .into_response(),
    }
}

async fn json_get(
    State(service): State<Arc<Service>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(function): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let named = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json_reply(run_call(service, from, function, Args::Named(named)).await)
}

async fn json_post(
    State(service): State<Arc<Service>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(function): Path<String>,
    body: Bytes,
) -> Response {
    let args = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => args_of(Some(v)),
        Err(e) => Err(CallError {
            code: -32700,
            message: format!("the body is not JSON: {e}"),
        }),
    };
    json_reply(match args {
        Ok(a) => run_call(service, from, function, a).await,
        Err(e) => Err(e),
    })
}
