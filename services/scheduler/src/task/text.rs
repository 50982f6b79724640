//! The words the scheduler writes: issue titles and bodies, branch names, and the prompts jobs
//! get. Pure functions of the task, so a repeated request is the same request.

use mainloop_events::v1::FeedbackAddressed;

use super::Task;

const TITLE_PREFIXES: &[&str] = &[
    "please ",
    "can you ",
    "could you ",
    "i want you to ",
    "i'd like you to ",
    "let's ",
];
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "to", "of", "in", "on", "for", "and", "or", "with", "at", "by", "from", "is", "it",
    "that", "this", "please",
];

/// First line of the description, polite prefixes stripped, capitalised, at most 70 characters.
pub fn issue_title(description: &str) -> String {
    let mut line = description.lines().next().unwrap_or_default().trim().to_string();
    loop {
        let lower = line.to_lowercase();
        match TITLE_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
            Some(prefix) => line = line[prefix.len()..].trim_start().to_string(),
            None => break,
        }
    }
    let mut chars = line.chars();
    let mut title: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Task".to_string(),
    };
    if title.chars().count() > 70 {
        title = title.chars().take(67).collect::<String>().trim_end().to_string() + "...";
    }
    title
}

/// `<kind>/<issue>-<words>`: kind from the description (fix, docs, test, refactor, chore, else
/// feature), up to 8 meaningful words, at most 50 characters, only `[a-z0-9-]` in the slug.
pub fn branch_name(description: &str, issue_number: u64) -> String {
    // URLs name the repository, not the change.
    let lower: String = description
        .split_whitespace()
        .filter(|w| !w.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let words: Vec<String> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(w))
        .map(str::to_string)
        .collect();
    let kind = match words.first().map(String::as_str) {
        Some("fix" | "bug" | "repair") => "fix",
        Some("document" | "docs" | "doc") => "docs",
        Some("test" | "tests") => "test",
        Some("refactor" | "cleanup") => "refactor",
        Some("chore" | "bump" | "upgrade") => "chore",
        _ if lower.contains("readme") || lower.contains("documentation") => "docs",
        _ => "feature",
    };
    let mut slug = if issue_number > 0 {
        issue_number.to_string()
    } else {
        String::new()
    };
    for word in words.iter().take(8) {
        let next_len = slug.len() + usize::from(!slug.is_empty()) + word.len();
        if kind.len() + 1 + next_len > 50 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(word);
    }
    if slug.is_empty() {
        slug.push_str("task");
    }
    format!("{kind}/{slug}")
}

/// The issue: the request, what the person's answers settled, the plan, and where it stands.
pub fn issue_body(task: &Task) -> String {
    let plan = if task.plan_text.trim().is_empty() {
        "_Planning: the agent is reading the code._"
    } else {
        task.plan_text.trim()
    };
    // What the answers settled and every change asked of earlier revisions.
    let settled: Vec<String> = task
        .answers
        .iter()
        .map(|a| format!("- {}: {}", a.header, a.values.join(", ")))
        .chain(
            task.revisions_asked
                .iter()
                .map(|(revision, feedback)| format!("- Asked of plan revision {revision}: {feedback}")),
        )
        .collect();
    let requirements = if settled.is_empty() {
        String::new()
    } else {
        format!("## Requirements\n\n{}\n\n", settled.join("\n"))
    };
    let status = if task.plan_revision == 0 {
        "planning".to_string()
    } else {
        format!("plan revision {} waits for review", task.plan_revision)
    };
    format!(
        "## Original Request\n\n{}\n\n{requirements}## Implementation Plan\n\n{plan}\n\n## Status\n\n{status}\n\n---\n_Planned by mainloop · task `{}` · plan revision {}_\n",
        task.description.trim(),
        task.task_id,
        task.plan_revision,
    )
}

/// The questions as one comment: numbered, options lettered, and how to answer.
pub fn questions_comment(task: &Task) -> String {
    let mut text = String::from("## Questions\n\nThe agent needs answers before it can plan:\n");
    for (i, question) in task.questions.iter().enumerate() {
        text.push_str(&format!(
            "\n**{}. {}** ({})\n",
            i + 1,
            question.question,
            question.header
        ));
        for (letter, option) in ('A'..='Z').zip(&question.options) {
            text.push_str(&format!(
                "   {letter}. {} — {}\n",
                option.label, option.description
            ));
        }
        if question.multi_select {
            text.push_str("   _(several may apply: \"1. A, C\")_\n");
        }
    }
    text.push_str(
        "\nReply with one line per question, like `1. A` (or `Header: your answer`), or answer in the \
         mainloop inbox. Only people with write access steer this task.\n",
    );
    text
}

/// The acknowledgement of answers, wherever they were given.
pub fn answers_comment(task: &Task) -> String {
    let answers: Vec<String> = task
        .last_answers
        .iter()
        .map(|a| format!("- {}: {}", a.header, a.values.join(", ")))
        .collect();
    format!(
        "Thanks, got the answers:\n\n{}\n\nPlanning again with them.\n",
        answers.join("\n")
    )
}

/// How to steer from the issue, said once when the first plan is ready.
pub fn steering_help() -> String {
    "The plan is ready for review (in the issue body above).\n\n\
     - To approve, react to this comment with 👍, 🚀, ❤️ or 🎉, reply `approve`, `lgtm` or `/approve`, \
     or approve in the mainloop inbox.\n\
     - To change it, reply with what to change (or `/revise <what>`): a new revision follows.\n\
     - `/cancel` stops the task.\n\n\
     Only people with write access to this repository steer this task.\n"
        .to_string()
}

pub fn pull_request_body(task: &Task) -> String {
    let closes = if task.issue_number > 0 {
        format!("Closes #{}\n\n", task.issue_number)
    } else {
        String::new()
    };
    format!(
        "{closes}{}\n\n---\n_Implemented by mainloop · task `{}`_\n",
        task.description.trim(),
        task.task_id
    )
}

pub fn plan_prompt(task: &Task) -> String {
    format!(
        "You are planning a change to the repository {}/{} (your working directory is a checkout of it).\n\n\
         The request:\n{}\n\n\
         Explore the code, then write a plan with the sections Summary, Files to modify, Files to create and \
         Considerations. If something essential is unclear, ask (at most four questions) instead of guessing. \
         Do not change any file.",
        task.repo.owner,
        task.repo.name,
        task.description.trim()
    )
}

/// What the next plan round must know: the previous plan, answers by question text, feedback.
pub fn plan_context(task: &Task) -> String {
    let mut context = String::new();
    let previous = if task.plan_text.is_empty() {
        &task.draft_plan
    } else {
        &task.plan_text
    };
    if !previous.is_empty() {
        context.push_str(&format!("Your previous plan:\n{}\n\n", previous.trim()));
    }
    if !task.answers.is_empty() {
        context.push_str("The person answered your questions:\n");
        for answer in &task.answers {
            context.push_str(&format!("- {}: {}\n", answer.header, answer.values.join(", ")));
        }
        context.push('\n');
    }
    if !task.feedback.is_empty() {
        context.push_str(&format!(
            "The person asked for changes to the plan:\n{}\n",
            task.feedback.trim()
        ));
    }
    context
}

pub fn implement_prompt(task: &Task) -> String {
    let issue = if task.issue_number > 0 {
        format!(" (issue #{})", task.issue_number)
    } else {
        String::new()
    };
    format!(
        "Implement this approved plan{issue} in the repository {}/{}, on the branch {} that is checked out.\n\n\
         The request:\n{}\n\nThe plan:\n{}\n\n\
         Commit your work with clear messages. Do not push; mainloop pushes and opens the pull request.",
        task.repo.owner,
        task.repo.name,
        task.branch_name,
        task.description.trim(),
        task.plan_text.trim()
    )
}

pub fn fix_prompt(task: &Task) -> String {
    format!(
        "CI failed on pull request #{} (branch {}, commit {}). Find the cause and fix it, then commit. \
         Do not push.\n\nWhat failed:\n{}",
        task.pr_number, task.branch_name, task.ci_fix_for, task.ci_failure_report
    )
}

/// Who approved, as the issue says it: a GitHub login as a mention, else the inbox.
pub fn approval_comment(revision: u32, by: &str) -> String {
    let who = match by.strip_prefix("github:") {
        Some(login) => format!("@{login}"),
        None => "the person in the mainloop inbox".to_string(),
    };
    format!(
        "Plan revision {revision} approved by {who}. Implementing it now; a draft pull request follows.\n"
    )
}

/// The note on the pull request when CI is green and it is marked ready.
pub fn ready_comment(task: &Task) -> String {
    let closes = if task.issue_number > 0 {
        format!(" It implements the plan in #{}.", task.issue_number)
    } else {
        String::new()
    };
    format!(
        "CI passed on `{}`: this pull request is ready for review.{closes}\n\n{}\n",
        task.ready_head.get(..12).unwrap_or(&task.ready_head),
        task.description.trim()
    )
}

/// The note left on the issue and pull request when the task is cancelled: who, and where.
pub fn cancel_comment(by: &str, reason: &str) -> String {
    let who = match by.strip_prefix("github:") {
        Some(login) => format!("by @{login} on GitHub"),
        None if by == "pr_closed" => "because its pull request was closed without merging".to_string(),
        None if by == "expired" => "because nobody answered in time".to_string(),
        None if by.is_empty() => String::new(),
        None => "by the person in the mainloop inbox".to_string(),
    };
    format!("This task was cancelled {who} ({reason}). Retry it from the mainloop inbox to start again.\n")
}

/// What a feedback job is asked: address the reviewers' comments (in the context) on the branch.
pub fn feedback_prompt(task: &Task) -> String {
    format!(
        "Reviewers commented on the pull request #{} for this change to {}/{}:\n{}\n\n\
         Address every comment in the context below on this branch, commit, and say in one line per \
         comment what you changed.",
        task.pr_number,
        task.repo.owner,
        task.repo.name,
        task.description.trim()
    )
}

/// What the person added about the task while it ran, for every job from then on.
pub fn added_context(task: &Task) -> String {
    let said: Vec<String> = task
        .added_context
        .iter()
        .map(|c| format!("- {}", c.trim()))
        .collect();
    format!(
        "The person added, after the task started (it comes after the request and overrides it where they differ):\n{}",
        said.join("\n")
    )
}

/// A wait as people say it: "45 min", "6 h", "2 days".
pub fn duration(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7_200 => format!("{} min", secs / 60),
        7_200..172_800 => format!("{} h", secs / 3_600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// What the agent said it did in a feedback round, as a quote of at most 1,500 characters.
fn quoted_summary(addressed: &FeedbackAddressed) -> String {
    let summary = addressed.summary.trim();
    if summary.is_empty() {
        return String::new();
    }
    let mut short: String = summary.chars().take(1_500).collect();
    if short.len() < summary.len() {
        short.push('…');
    }
    let quoted: Vec<String> = short.lines().map(|line| format!("> {line}")).collect();
    format!("\n\n{}", quoted.join("\n"))
}

/// The reply on an inline comment's thread when its round is done.
pub fn feedback_reply(round: u32, addressed: &FeedbackAddressed) -> String {
    let said = quoted_summary(addressed);
    if addressed.commits == 0 {
        format!("Looked at this in feedback round {round} and changed nothing.{said}")
    } else {
        let sha = addressed.head_sha.get(..7).unwrap_or(&addressed.head_sha);
        format!("Addressed in {sha} (feedback round {round}); CI checks it before review resumes.{said}")
    }
}

/// The one comment on the pull request that ends a round with review texts or conversation
/// comments in it.
pub fn feedback_summary(round: u32, addressed: &FeedbackAddressed) -> String {
    let said = quoted_summary(addressed);
    if addressed.commits == 0 {
        format!("**Feedback round {round}:** looked at the feedback and changed nothing.{said}")
    } else {
        let sha = addressed.head_sha.get(..7).unwrap_or(&addressed.head_sha);
        let commits = if addressed.commits == 1 {
            "1 commit".to_string()
        } else {
            format!("{} commits", addressed.commits)
        };
        format!("**Feedback round {round}:** addressed in {commits}, up to {sha}.{said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_drop_politeness_and_are_capitalised_and_short() {
        assert_eq!(
            issue_title("please add a quick start section\nmore"),
            "Add a quick start section"
        );
        assert_eq!(issue_title("Can you please fix the login"), "Fix the login");
        let long = issue_title(&"word ".repeat(30));
        assert!(long.chars().count() <= 70 && long.ends_with("..."), "{long}");
        assert_eq!(issue_title(""), "Task");
    }

    #[test]
    fn branch_names_are_safe_short_and_typed() {
        assert_eq!(
            branch_name(
                "add a quick start section to the README of https://github.com/acme/widgets",
                7
            ),
            "docs/7-add-quick-start-section-readme"
        );
        assert_eq!(branch_name("Fix the login bug", 0), "fix/fix-login-bug");
        assert_eq!(branch_name("Add dark mode", 42), "feature/42-add-dark-mode");
        assert_eq!(branch_name("???", 0), "feature/task");
        assert!(branch_name(&"longword ".repeat(20), 123).len() <= 50);
    }
}
