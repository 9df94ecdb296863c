//! The control API server (see [`crate::api`]): plain HTTP/1.1. Migration
//! commands are handed to the supervisor, which owns QMP.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::{
    ApiError, HEALTHZ_PATH, LauncherPhase, MIGRATE_CANCEL_PATH, MIGRATE_PATH, MIGRATION_PATH,
    MigrateRequest, MigrationPhase, QUIESCE_PATH, QuiesceState, QuiesceStatus, RELEASE_PATH,
    SHUTDOWN_PATH, STATUS_PATH,
};
use crate::state::{Control, State};

/// Largest request body accepted (a `MigrateRequest` is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, state: &Arc<State>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, HEALTHZ_PATH) => text(StatusCode::OK, "ok\n"),
        (&Method::GET, STATUS_PATH) => json(StatusCode::OK, &state.snapshot()),
        (&Method::POST, SHUTDOWN_PATH) => {
            state.request_shutdown();
            json(StatusCode::ACCEPTED, &state.snapshot())
        }
        (&Method::GET, MIGRATION_PATH) => match state.snapshot().migration {
            Some(m) => json(StatusCode::OK, &m),
            None => error(404, "no migration".into()),
        },
        (&Method::POST, MIGRATE_PATH) => migrate(req, state).await,
        (&Method::POST, MIGRATE_CANCEL_PATH) => {
            if state.snapshot().migration.is_none() {
                return error(409, "no migration in progress".into());
            }
            reply(state.control(Control::Cancel).await)
        }
        (&Method::POST, QUIESCE_PATH) => quiesce(state).await,
        (&Method::POST, RELEASE_PATH) => match state.quiescer() {
            Some(q) => quiesce_reply(q.release(state).await),
            // No QEMU under supervision: nothing can be held.
            None => json(
                StatusCode::OK,
                &QuiesceStatus {
                    state: QuiesceState::Released,
                    frozen_filesystems: None,
                    auto_release_seconds: None,
                    message: "no VM runs".into(),
                },
            ),
        },
        (
            _,
            HEALTHZ_PATH | STATUS_PATH | SHUTDOWN_PATH | MIGRATION_PATH | MIGRATE_PATH
            | MIGRATE_CANCEL_PATH | QUIESCE_PATH | RELEASE_PATH,
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn migrate(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(400, format!("cannot read the request body: {e}")),
    };
    let request: MigrateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(400, format!("body is not a MigrateRequest: {e}")),
    };
    if let Err(e) = request.check() {
        return error(400, e);
    }
    // Answer at once instead of queueing behind a VM that is still starting.
    if state.snapshot().phase != LauncherPhase::Running {
        return error(409, "the VM is not running".into());
    }
    reply(state.control(|tx| Control::Migrate(request, tx)).await)
}

async fn quiesce(state: &Arc<State>) -> Response<Full<Bytes>> {
    let Some(q) = state.quiescer() else {
        return error(409, "the launcher is not supervising a running VM".into());
    };
    let status = state.snapshot();
    if !matches!(status.phase, LauncherPhase::Running | LauncherPhase::Paused) {
        return error(409, format!("the VM is {:?}, not running", status.phase));
    }
    if status
        .migration
        .is_some_and(|m| m.phase == MigrationPhase::Migrating)
    {
        return error(409, "a migration is in progress".into());
    }
    quiesce_reply(q.quiesce(state).await)
}

fn quiesce_reply(r: Result<QuiesceStatus, crate::quiesce::QuiesceError>) -> Response<Full<Bytes>> {
    match r {
        Ok(s) => json(StatusCode::OK, &s),
        Err((code, message)) => error(code, message),
    }
}

fn reply(r: crate::state::ControlReply) -> Response<Full<Bytes>> {
    match r {
        Ok(status) => json(StatusCode::ACCEPTED, &status),
        Err((code, message)) => error(code, message),
    }
}

fn error(code: u16, message: String) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &ApiError { error: message })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
