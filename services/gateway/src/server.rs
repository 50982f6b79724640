//! The HTTP server, bounded: a connection that sends no request head within `HEADER_TIMEOUT` is
//! closed (idle and slow-loris sockets cannot pile up), at most `MAX_CONNECTIONS` are open at
//! once (one more is closed at once, with a log line, instead of exhausting file descriptors),
//! and on shutdown open requests get `DRAIN` to finish. Sockets send at once (`TCP_NODELAY`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS: usize = 4096;
const DRAIN: Duration = Duration::from_secs(5);

pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: wait a little rather than spin.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Each server-sent event goes out as it is written, not held back until the browser
        // acknowledged the one before (Nagle's algorithm beside its delayed ACKs: up to 40 ms).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY could not be set");
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "connection limit reached; closing a new connection"
            );
            continue;
        };
        let app = app.clone();
        // Who connected, for the trusted-proxy check (`ConnectInfo`).
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 waits for the first bytes, before any header timer
            // runs: a socket that sends nothing at all is closed here.
            let mut first = [0u8; 1];
            if tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first))
                .await
                .is_err()
            {
                drop(permit);
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish in time; closing them");
    }
}
