//! The `/metrics` endpoint: plain HTTP/1.1, `GET /metrics` answered with
//! the Prometheus text, anything else `404` (or `405` for another method
//! on `/metrics`). Bounded: at most [`MAX_CONNECTIONS`] at once (more wait
//! in the listener's backlog), and a client has [`HEADER_TIMEOUT`] to send
//! its request's head.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Metrics;

/// Scrapers connected at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `metrics` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: impl Future<Output = ()> + Send) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = &mut shutdown => return,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, for instance: try again soon.
                    tracing::debug!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _held = permit;
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&metrics, &request)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn answer(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = route(request.method(), request.uri().path(), || metrics.render());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// What a request gets: the rendering only for `GET /metrics`.
fn route(method: &Method, path: &str, render: impl FnOnce() -> String) -> (StatusCode, &'static str, String) {
    match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, render()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n".into()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found; metrics are at /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_renders() {
        assert_eq!(route(&Method::GET, "/metrics", || "x 1\n".into()).0, StatusCode::OK);
        assert_eq!(route(&Method::GET, "/metrics", || "x 1\n".into()).2, "x 1\n");
        assert_eq!(route(&Method::POST, "/metrics", || unreachable!()).0, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(route(&Method::GET, "/", || unreachable!()).0, StatusCode::NOT_FOUND);
        assert_eq!(route(&Method::GET, "/metrics/x", || unreachable!()).0, StatusCode::NOT_FOUND);
    }
}
