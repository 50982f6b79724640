//! Who may steer a task from GitHub: a commenter's permission on the repository
//! (`GET /repos/{owner}/{repo}/collaborators/{login}/permission`), kept for ten minutes so a
//! busy thread does not ask for every comment. Someone who is not a collaborator has none. With a
//! configured allow-list (`GITHUB_STEERERS`), exactly the people on it steer, and nobody is
//! looked up.

use crate::client::GitHubError;
use mainloop_events::v1::AuthorPermission;

/// How long a looked-up permission is trusted.
const FRESH_FOR_SECS: f64 = 600.0;

/// Who steers: the repository's writers, or the people on a configured list.
#[derive(Debug, Clone, Default)]
pub struct Steerers {
    /// Lower-case logins; `None`: look up each person's permission.
    pub allowed: Option<Vec<String>>,
}

impl Steerers {
    /// From a comma-separated list of logins; empty: the repository's writers.
    pub fn from_list(list: &str) -> Self {
        let allowed: Vec<String> = list
            .split(',')
            .map(|login| login.trim().trim_start_matches('@').to_lowercase())
            .filter(|login| !login.is_empty())
            .collect();
        Steerers {
            allowed: (!allowed.is_empty()).then_some(allowed),
        }
    }
}

pub async fn of(
    poller: &super::poller::Poller,
    owner: &str,
    name: &str,
    login: &str,
) -> Result<AuthorPermission, super::poller::PollError> {
    let failed = |e: sqlx::Error| super::poller::PollError::Failed(e.to_string());
    if login.is_empty() {
        return Ok(AuthorPermission::None);
    }
    if let Some(allowed) = &poller.steerers.allowed {
        return Ok(if allowed.contains(&login.to_lowercase()) {
            AuthorPermission::Write
        } else {
            AuthorPermission::None
        });
    }
    let (db, github) = (&poller.db, &poller.github);
    let known: Option<String> = sqlx::query_scalar(
        "SELECT permission FROM permissions WHERE owner = $1 AND name = $2 AND login = $3 \
         AND EXTRACT(EPOCH FROM now() - checked_at) < $4",
    )
    .bind(owner)
    .bind(name)
    .bind(login)
    .bind(FRESH_FOR_SECS)
    .fetch_optional(db)
    .await
    .map_err(failed)?;
    let permission = match known {
        Some(permission) => permission,
        None => {
            let permission = match github.collaborator_permission(owner, name, login).await {
                Ok(permission) => permission,
                Err(GitHubError::Api { status: 404, .. }) => "none".to_string(),
                Err(err) => return Err(err.into()),
            };
            sqlx::query(
                "INSERT INTO permissions (owner, name, login, permission) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (owner, name, login) DO UPDATE SET permission = excluded.permission, checked_at = now()",
            )
            .bind(owner)
            .bind(name)
            .bind(login)
            .bind(&permission)
            .execute(db)
            .await
            .map_err(failed)?;
            permission
        }
    };
    Ok(level(&permission))
}

/// GitHub's names (`admin`, `maintain`, `write`, `triage`, `read`, `none`) as ours.
fn level(permission: &str) -> AuthorPermission {
    match permission {
        "admin" => AuthorPermission::Admin,
        "maintain" | "write" => AuthorPermission::Write,
        "triage" | "read" => AuthorPermission::Read,
        _ => AuthorPermission::None,
    }
}

#[cfg(test)]
mod tests {
    use mainloop_events::v1::AuthorPermission;

    use super::{Steerers, level};

    #[test]
    fn an_allow_list_is_read_as_people_write_it() {
        assert_eq!(
            Steerers::from_list(" @Maria, bob ,,").allowed,
            Some(vec!["maria".to_string(), "bob".to_string()])
        );
        assert_eq!(Steerers::from_list(" ").allowed, None);
    }

    #[test]
    fn githubs_roles_map_to_who_may_steer() {
        assert_eq!(level("admin"), AuthorPermission::Admin);
        assert_eq!(level("maintain"), AuthorPermission::Write);
        assert_eq!(level("write"), AuthorPermission::Write);
        assert_eq!(level("triage"), AuthorPermission::Read);
        assert_eq!(level("none"), AuthorPermission::None);
        assert_eq!(level(""), AuthorPermission::None);
    }
}
