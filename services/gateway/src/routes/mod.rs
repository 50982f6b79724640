mod web;

use axum::Router;
use mainloop_runtime::{Health, health};

pub fn app(health: Health) -> Router {
    Router::new().merge(health::router(health)).merge(web::router())
}
