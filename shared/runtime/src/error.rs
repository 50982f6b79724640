use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations of schema {schema}: {source}")]
    Migrate {
        schema: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("{0:?} is not a valid schema name (lowercase letters and _)")]
    BadSchema(String),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("cannot serve health on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}
