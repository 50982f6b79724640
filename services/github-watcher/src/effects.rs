//! GitHub effects, each done once. The request's `effect_id` is the idempotency key: its row is
//! locked while the effect runs (a concurrent delivery waits, then finds it done), and GitHub
//! objects we create carry it in a hidden marker, so an attempt that crashed after acting is
//! recognised on GitHub instead of acting again.

use mainloop_bus::{Bus, Delivery, Expect, Handler, HandlerError};
use mainloop_events::v1::{
    CommentPosted, GitHubEffectFailed, GitHubEffectRequested, GitHubRateLimited, IssueClosed, IssueCreated,
    IssueUpdated, PullRequestClosedByUs, PullRequestMarkedReady, PullRequestOpened, ReactionAdded,
    ReactionTarget, Reopened, git_hub_effect_requested::Effect,
};
use mainloop_events::{Envelope, Payload, subjects};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::client::{GitHub, GitHubError};

pub struct Effects {
    pub bus: Bus,
    pub db: PgPool,
    pub github: Option<GitHub>,
}

fn marker(effect_id: &str) -> String {
    format!("<!-- mainloop:effect={effect_id} -->")
}

fn marked(body: &str, effect_id: &str) -> String {
    format!("{body}\n\n{}", marker(effect_id))
}

fn has_marker(item: &Value, effect_id: &str) -> bool {
    item["body"]
        .as_str()
        .is_some_and(|b| b.contains(&marker(effect_id)))
}

fn number(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or_default()
}

impl Handler for Effects {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let request = delivery.event;
        let Some(Payload::GithubEffectRequested(effect)) = &request.payload else {
            return Ok(());
        };
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let subject = subjects::github(&request.user_id, &request.correlation_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        sqlx::query("INSERT INTO effects (effect_id, state) VALUES ($1, 'started') ON CONFLICT DO NOTHING")
            .bind(&effect.effect_id)
            .execute(&self.db)
            .await
            .map_err(transient)?;
        // The row lock makes a second delivery of the same request wait for the first, then
        // find it done.
        let mut tx = self.db.begin().await.map_err(transient)?;
        let (state, result): (String, Option<Vec<u8>>) =
            sqlx::query_as("SELECT state, result FROM effects WHERE effect_id = $1 FOR UPDATE")
                .bind(&effect.effect_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(transient)?;
        if let (true, Some(result)) = (state == "done", result) {
            tx.commit().await.map_err(transient)?;
            // Done before; the report may not have gone out.
            let event = Envelope::from_bytes(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
            return self.report(&subject, &event).await;
        }
        let payload = match self.perform(effect).await {
            Ok(payload) => payload,
            // Waiting on GitHub is never failing: the effect comes back when GitHub said, or
            // with backoff, for as long as it takes (the consumer never dead-letters these).
            Err(GitHubError::RateLimited { wait, message, .. }) => {
                tracing::warn!(effect = %effect.effect_id, ?wait, "GitHub rate limit; waiting");
                drop(tx);
                self.tell_waiting(&subject, &request, &effect.effect_id, message, wait)
                    .await;
                return Err(HandlerError::RetryAfter {
                    reason: "GitHub rate limit".into(),
                    after: wait,
                });
            }
            Err(err) if err.retryable() => return Err(HandlerError::Transient(err.to_string())),
            Err(err) => Payload::GithubEffectFailed(GitHubEffectFailed {
                effect_id: effect.effect_id.clone(),
                error: match err.fix() {
                    Some(fix) => format!("{err} ({fix})"),
                    None => err.to_string(),
                },
                http_status: err.status(),
                retryable: false,
            }),
        };
        if let (Some(Effect::PostComment(comment)), Payload::CommentPosted(posted)) =
            (&effect.effect, &payload)
            && comment.watch_reactions
        {
            let repo = effect.repo.clone().unwrap_or_default();
            sqlx::query(
                "INSERT INTO reaction_watches (task_id, user_id, owner, name, comment_id) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&request.correlation_id)
            .bind(&request.user_id)
            .bind(&repo.owner)
            .bind(&repo.name)
            .bind(i64::try_from(posted.comment_id).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(transient)?;
        }
        let event = Envelope::new(&request.user_id, &request.correlation_id, payload).caused_by(&request.id);
        sqlx::query(
            "UPDATE effects SET state = 'done', result = $2, updated_at = now() WHERE effect_id = $1",
        )
        .bind(&effect.effect_id)
        .bind(event.to_bytes())
        .execute(&mut *tx)
        .await
        .map_err(transient)?;
        tx.commit().await.map_err(transient)?;
        self.report(&subject, &event).await
    }
}

impl Effects {
    /// Says that the effect waits for GitHub, so the task card can say until when. Best effort:
    /// the wait itself does not depend on it.
    async fn tell_waiting(
        &self,
        subject: &str,
        request: &Envelope,
        effect_id: &str,
        message: String,
        wait: std::time::Duration,
    ) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let retry_at_ms = u64::try_from((now + wait).as_millis()).unwrap_or(u64::MAX);
        let payload = Payload::GithubRateLimited(GitHubRateLimited {
            effect_id: effect_id.to_string(),
            message,
            retry_at_ms,
        });
        let event = Envelope::new(&request.user_id, &request.correlation_id, payload).caused_by(&request.id);
        if let Err(err) = self.bus.publish(subject, &event, Expect::Any).await {
            tracing::warn!(error = %err, "could not report the rate limit wait");
        }
    }

    async fn report(&self, subject: &str, event: &Envelope) -> Result<(), HandlerError> {
        self.bus
            .publish(subject, event, Expect::Any)
            .await
            .map(drop)
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }

    /// Does the effect. Creating effects first look for their marker, so an attempt that acted and
    /// then crashed before recording it is adopted, not repeated.
    async fn perform(&self, request: &GitHubEffectRequested) -> Result<Payload, GitHubError> {
        let Some(github) = &self.github else {
            return Err(GitHubError::Api {
                status: 401,
                message: "GITHUB_TOKEN is not set".into(),
            });
        };
        let repo = request.repo.clone().unwrap_or_default();
        let (owner, name, id) = (repo.owner.as_str(), repo.name.as_str(), request.effect_id.clone());
        let Some(effect) = &request.effect else {
            return Err(GitHubError::Api {
                status: 400,
                message: "empty effect".into(),
            });
        };
        Ok(match effect {
            Effect::CreateIssue(issue) => {
                let found = github
                    .issues(owner, name)
                    .await?
                    .into_iter()
                    .find(|i| has_marker(i, &id));
                let created = match found {
                    Some(existing) => existing,
                    None => {
                        github
                            .create_issue(
                                owner,
                                name,
                                &issue.title,
                                &marked(&issue.body, &id),
                                &issue.labels,
                            )
                            .await?
                    }
                };
                Payload::IssueCreated(IssueCreated {
                    effect_id: id,
                    issue_number: number(&created, "number"),
                    issue_url: created["html_url"].as_str().unwrap_or_default().to_string(),
                })
            }
            Effect::UpdateIssueBody(update) => {
                let mut changes = json!({"body": update.body});
                if !update.labels.is_empty() {
                    changes["labels"] = json!(update.labels);
                }
                github
                    .update_issue(owner, name, update.issue_number, &changes)
                    .await?;
                Payload::IssueUpdated(IssueUpdated {
                    effect_id: id,
                    issue_number: update.issue_number,
                })
            }
            Effect::PostComment(comment) => {
                let found = github
                    .comments(owner, name, comment.issue_number)
                    .await?
                    .into_iter()
                    .find(|c| has_marker(c, &id));
                let posted = match found {
                    Some(existing) => existing,
                    None => {
                        github
                            .comment(owner, name, comment.issue_number, &marked(&comment.body, &id))
                            .await?
                    }
                };
                Payload::CommentPosted(CommentPosted {
                    effect_id: id,
                    issue_number: comment.issue_number,
                    comment_id: number(&posted, "id"),
                    comment_url: posted["html_url"].as_str().unwrap_or_default().to_string(),
                })
            }
            Effect::AddReaction(reaction) => {
                let on_review_comment = reaction.target() == ReactionTarget::ReviewComment;
                github
                    .react(
                        owner,
                        name,
                        reaction.comment_id,
                        &reaction.content,
                        on_review_comment,
                    )
                    .await?;
                Payload::ReactionAdded(ReactionAdded {
                    effect_id: id,
                    comment_id: reaction.comment_id,
                    content: reaction.content.clone(),
                })
            }
            Effect::ReplyToReviewComment(reply) => {
                let found = github
                    .review_comments(owner, name, reply.pr_number)
                    .await?
                    .into_iter()
                    .find(|c| has_marker(c, &id));
                let posted = match found {
                    Some(existing) => existing,
                    None => {
                        github
                            .reply_to_review_comment(
                                owner,
                                name,
                                reply.pr_number,
                                reply.comment_id,
                                &marked(&reply.body, &id),
                            )
                            .await?
                    }
                };
                Payload::CommentPosted(CommentPosted {
                    effect_id: id,
                    issue_number: reply.pr_number,
                    comment_id: number(&posted, "id"),
                    comment_url: posted["html_url"].as_str().unwrap_or_default().to_string(),
                })
            }
            Effect::Reopen(reopen) => {
                if reopen.issue_number > 0 {
                    github
                        .update_issue(owner, name, reopen.issue_number, &json!({"state": "open"}))
                        .await?;
                }
                // GitHub refuses to reopen a merged pull request or one whose branch is gone
                // (422): the task then opens a new one.
                let (pr_reopened, error) = if reopen.pr_number == 0 {
                    (false, String::new())
                } else {
                    match github
                        .update_pull(owner, name, reopen.pr_number, &json!({"state": "open"}))
                        .await
                    {
                        Ok(_) => (true, String::new()),
                        Err(err @ GitHubError::Api { status: 422, .. }) => (false, err.to_string()),
                        Err(err) => return Err(err),
                    }
                };
                Payload::Reopened(Reopened {
                    effect_id: id,
                    issue_number: reopen.issue_number,
                    pr_number: reopen.pr_number,
                    pr_reopened,
                    error,
                })
            }
            Effect::OpenPullRequest(pull) => {
                let found = github
                    .pulls_for_head(owner, name, &pull.head)
                    .await?
                    .into_iter()
                    .find(|p| p["state"] == "open");
                let opened = match found {
                    Some(existing) => existing,
                    None => {
                        let base = if pull.base.is_empty() {
                            github.repo(owner, name).await?["default_branch"]
                                .as_str()
                                .unwrap_or("main")
                                .to_string()
                        } else {
                            pull.base.clone()
                        };
                        let body = json!({"title": pull.title, "body": marked(&pull.body, &id), "head": pull.head, "base": base, "draft": pull.draft});
                        github.open_pull(owner, name, &body).await?
                    }
                };
                Payload::PullRequestOpened(PullRequestOpened {
                    effect_id: id,
                    pr_number: number(&opened, "number"),
                    pr_url: opened["html_url"].as_str().unwrap_or_default().to_string(),
                    head_branch: opened["head"]["ref"].as_str().unwrap_or_default().to_string(),
                    head_sha: opened["head"]["sha"].as_str().unwrap_or_default().to_string(),
                })
            }
            Effect::MarkPullRequestReady(ready) => {
                let pull = github.pull(owner, name, ready.pr_number).await?;
                if pull["draft"].as_bool().unwrap_or(false) {
                    github
                        .mark_ready(pull["node_id"].as_str().unwrap_or_default())
                        .await?;
                }
                Payload::PullRequestMarkedReady(PullRequestMarkedReady {
                    effect_id: id,
                    pr_number: ready.pr_number,
                })
            }
            Effect::CloseIssue(close) => {
                github
                    .update_issue(owner, name, close.issue_number, &json!({"state": "closed"}))
                    .await?;
                Payload::IssueClosed(IssueClosed {
                    effect_id: id,
                    issue_number: close.issue_number,
                })
            }
            Effect::ClosePullRequest(close) => {
                github
                    .update_pull(owner, name, close.pr_number, &json!({"state": "closed"}))
                    .await?;
                Payload::PullRequestClosedByUs(PullRequestClosedByUs {
                    effect_id: id,
                    pr_number: close.pr_number,
                })
            }
        })
    }
}
