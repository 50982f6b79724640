use axum::Router;
use axum::response::Html;
use axum::routing::get;

const INDEX: &str = include_str!("../../../../web/index.html");

pub fn router() -> Router<crate::state::AppState> {
    Router::new().route("/", get(|| async { Html(INDEX) }))
}
