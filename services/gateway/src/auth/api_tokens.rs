//! Per-person API tokens, for teams: made and revoked with `mainloop tokens`, kept in the gateway's
//! schema as SHA-256 hashes only (a token is 32 random bytes, so a plain hash is enough; what is
//! stored cannot be used to sign in), shown once when made. A request's bearer token is looked
//! up by its hash on every request, so a revoked token stops working at once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// What every token starts with, so one found in a log or a repository is recognisable.
pub const PREFIX: &str = "mlt_";

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no randomness for a token: {0}")]
    Random(String),
    #[error("the token store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Makes a token for the person `name` (as a proxy would name them: see [`super::person_id`]);
/// returns its id and the token (shown once, never stored).
pub async fn create(db: &PgPool, name: &str, label: &str) -> Result<(String, String), TokenError> {
    let user_id = super::person_id(name).map_err(TokenError::Invalid)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let id = format!("tok_{}", uuid::Uuid::now_v7().simple());
    sqlx::query("INSERT INTO api_tokens (id, user_id, label, token_hash) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(&user_id)
        .bind(label)
        .bind(hash(&token))
        .execute(db)
        .await?;
    Ok((id, token))
}

/// Revokes the token `id`; false if there is no such token still in use.
pub async fn revoke(db: &PgPool, id: &str) -> Result<bool, TokenError> {
    let revoked =
        sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(db)
            .await?
            .rows_affected();
    Ok(revoked == 1)
}

/// Every token (of the person `name`, if given), newest first.
pub async fn list(db: &PgPool, name: Option<&str>) -> Result<Vec<TokenInfo>, TokenError> {
    let user_id = name
        .map(super::person_id)
        .transpose()
        .map_err(TokenError::Invalid)?;
    Ok(sqlx::query_as(
        "SELECT id, user_id, label, created_at, revoked_at FROM api_tokens \
         WHERE $1::text IS NULL OR user_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// Whose token this is, if it is one in use.
pub async fn user_of(db: &PgPool, token: &str) -> Result<Option<String>, sqlx::Error> {
    if !token.starts_with(PREFIX) {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(hash(token))
        .fetch_optional(db)
        .await
}
