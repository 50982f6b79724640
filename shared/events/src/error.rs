use thiserror::Error;

/// Why bytes or names could not become a valid event or subject.
#[derive(Debug, Error)]
pub enum EventError {
    #[error("malformed envelope: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("envelope {id} has no payload")]
    MissingPayload { id: String },
    #[error("envelope {id} says type {declared:?} but carries {actual:?}")]
    TypeMismatch {
        id: String,
        declared: String,
        actual: &'static str,
    },
    #[error("envelope has no id")]
    MissingId,
    #[error("{what} {value:?} cannot be a subject token (1-128 of A-Z a-z 0-9 _ -)")]
    BadToken { what: &'static str, value: String },
    #[error("cannot render event as JSON: {0}")]
    Json(#[from] serde_json::Error),
}
