use mainloop_runtime::service::StartError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http { addr: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("the live feeds could not be followed: {0}")]
    Feeds(#[source] async_nats::SubscribeError),
}
