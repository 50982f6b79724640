//! How every fake serves HTTP: as the services it stands for do, each write goes out when it is
//! made. Without `TCP_NODELAY` a streamed reply's second small write waits for the client's
//! delayed ACK of the first (about 40 ms on Linux), which no real streaming API does.

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

/// Serves `app` on `listener` in the background.
pub fn serve(listener: TcpListener, app: Router) {
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "TCP_NODELAY not set");
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
}
