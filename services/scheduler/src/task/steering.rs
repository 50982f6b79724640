//! What a comment on GitHub asks of a task, read the way people write on an issue. Pure.
//!
//! - Slash commands, on the first line: `/approve`, `/revise <what to change>`, `/implement`,
//!   `/cancel`, `/retry`.
//! - While a plan waits for review: an approval in so many words ("approve", "approved",
//!   "lgtm", "looks good", "looks good to me", "ship it", with a trailing "!" or "." at most);
//!   anything else is a revision request with the comment as the feedback. "approve? no" is a
//!   revision, not an approval.
//! - While questions wait: answers as "1. A", "1) A", "1: A" (a letter picks that option, other
//!   text is the answer), several options as "1. A, C", "Header: answer", or, with one
//!   question, the whole comment as the answer.
//!
//! - Once there is a pull request: `/revise <what to change>`, or any comment that mentions
//!   `@mainloop`, is review feedback.
//!
//! Quoted lines (`> …`, GitHub's "Quote reply") are not read.

use mainloop_events::v1::{Answer, Question, TaskStatus};

/// What the comment asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steer {
    Approve,
    Revise(String),
    Answer(Vec<Answer>),
    Implement,
    Cancel,
    Retry,
    /// Nothing the task can act on.
    Nothing,
}

const APPROVALS: &[&str] = &[
    "approve",
    "approved",
    "lgtm",
    "looks good",
    "looks good to me",
    "ship it",
];

/// Reads `body` for a task in `status` that asked `questions`.
pub fn read(body: &str, status: TaskStatus, questions: &[Question]) -> Steer {
    let text = unquoted(body);
    if let Some(command) = slash_command(&text) {
        return command;
    }
    match status {
        TaskStatus::WaitingPlanReview if is_approval(&text) => Steer::Approve,
        TaskStatus::WaitingPlanReview if !text.is_empty() => Steer::Revise(text),
        TaskStatus::WaitingQuestions => answers(&text, questions)
            .map(Steer::Answer)
            .unwrap_or(Steer::Nothing),
        TaskStatus::Implementing | TaskStatus::UnderReview if mentions_mainloop(&text) => Steer::Revise(text),
        _ => Steer::Nothing,
    }
}

fn unquoted(body: &str) -> String {
    body.lines()
        .filter(|line| !line.trim_start().starts_with('>'))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn slash_command(text: &str) -> Option<Steer> {
    let first = text.lines().next()?.trim();
    let (command, rest) = first.split_once(char::is_whitespace).unwrap_or((first, ""));
    let after_first_line = text.split_once('\n').map_or("", |(_, more)| more);
    Some(match command.to_ascii_lowercase().as_str() {
        "/approve" => Steer::Approve,
        "/implement" => Steer::Implement,
        "/cancel" => Steer::Cancel,
        "/retry" => Steer::Retry,
        "/revise" => {
            let feedback = format!("{} {}", rest.trim(), after_first_line.trim());
            let feedback = feedback.trim();
            if feedback.is_empty() {
                Steer::Nothing
            } else {
                Steer::Revise(feedback.to_string())
            }
        }
        _ => return None,
    })
}

/// `@mainloop` as a word of its own (not `@mainloop-bot` or an e-mail address).
fn mentions_mainloop(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.match_indices("@mainloop").any(|(at, found)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + found.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric())
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

fn is_approval(text: &str) -> bool {
    let said = text.trim().trim_end_matches(['!', '.']).trim().to_lowercase();
    APPROVALS.contains(&said.as_str())
}

/// The answers the comment gives, when it answers every question.
fn answers(text: &str, questions: &[Question]) -> Option<Vec<Answer>> {
    if questions.is_empty() || text.is_empty() {
        return None;
    }
    let mut given: Vec<Answer> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some((question, value)) = numbered(line, questions).or_else(|| by_header(line, questions)) {
            given.retain(|a| a.question_id != question.id);
            given.push(Answer {
                question_id: question.id.clone(),
                header: String::new(),
                values: values(value, question),
            });
        }
    }
    if given.is_empty()
        && let [only] = questions
    {
        given.push(Answer {
            question_id: only.id.clone(),
            header: String::new(),
            values: values(text, only),
        });
    }
    let all = questions.iter().all(|q| {
        given
            .iter()
            .any(|a| a.question_id == q.id && !a.values.is_empty())
    });
    all.then_some(given)
}

/// "1. A", "1) A", "1: A".
fn numbered<'a, 'q>(line: &'a str, questions: &'q [Question]) -> Option<(&'q Question, &'a str)> {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let number: usize = line.get(..digits)?.parse().ok()?;
    let rest = line.get(digits..)?;
    let value = rest
        .strip_prefix('.')
        .or_else(|| rest.strip_prefix(')'))
        .or_else(|| rest.strip_prefix(':'))?;
    let question = questions.get(number.checked_sub(1)?)?;
    Some((question, value.trim()))
}

/// "Placement: at the top".
fn by_header<'a, 'q>(line: &'a str, questions: &'q [Question]) -> Option<(&'q Question, &'a str)> {
    let (header, value) = line.split_once(':')?;
    let question = questions
        .iter()
        .find(|q| !q.header.is_empty() && q.header.eq_ignore_ascii_case(header.trim()))?;
    Some((question, value.trim()))
}

/// "A, C" picks options by letter; anything else is the answer as written.
fn values(value: &str, question: &Question) -> Vec<String> {
    let picks: Option<Vec<String>> = value
        .split(',')
        .map(str::trim)
        .map(|pick| option_by_letter(pick, question))
        .collect();
    match picks {
        Some(picks) if !picks.is_empty() && (question.multi_select || picks.len() == 1) => picks,
        _ if value.trim().is_empty() => vec![],
        _ => vec![value.trim().to_string()],
    }
}

fn option_by_letter(pick: &str, question: &Question) -> Option<String> {
    let mut chars = pick.chars();
    let (Some(letter), None) = (chars.next(), chars.next()) else {
        return None;
    };
    let index = usize::from(
        u8::try_from(letter.to_ascii_uppercase())
            .ok()?
            .checked_sub(b'A')?,
    );
    question.options.get(index).map(|o| o.label.clone())
}

#[cfg(test)]
mod tests {
    use mainloop_events::v1::{Question, QuestionOption, TaskStatus};

    use super::{Steer, read};

    fn question(id: &str, header: &str, options: &[&str], multi_select: bool) -> Question {
        Question {
            id: id.into(),
            header: header.into(),
            question: format!("{header}?"),
            options: options
                .iter()
                .map(|label| QuestionOption {
                    label: (*label).into(),
                    description: String::new(),
                })
                .collect(),
            multi_select,
        }
    }

    fn answered(steer: Steer) -> Vec<(String, Vec<String>)> {
        match steer {
            Steer::Answer(answers) => answers.into_iter().map(|a| (a.question_id, a.values)).collect(),
            other => panic!("not answers: {other:?}"),
        }
    }

    const REVIEW: TaskStatus = TaskStatus::WaitingPlanReview;

    #[test]
    fn approval_only_in_so_many_words() {
        for yes in [
            "approve",
            "Approved!",
            "LGTM",
            "looks good.",
            "Looks good to me",
            "ship it",
        ] {
            assert_eq!(read(yes, REVIEW, &[]), Steer::Approve, "{yes}");
        }
        for no in ["approve? no", "not lgtm", "I don't approve"] {
            assert_eq!(read(no, REVIEW, &[]), Steer::Revise(no.into()), "{no}");
        }
        assert_eq!(
            read("> approve\nplease add tests", REVIEW, &[]),
            Steer::Revise("please add tests".into()),
            "a quoted approval is not one"
        );
        assert_eq!(read("approve", TaskStatus::Implementing, &[]), Steer::Nothing);
    }

    #[test]
    fn slash_commands_work_in_any_state() {
        assert_eq!(read("/approve", REVIEW, &[]), Steer::Approve);
        assert_eq!(
            read("/revise use a table\nand keep it short", REVIEW, &[]),
            Steer::Revise("use a table and keep it short".into())
        );
        assert_eq!(
            read("/revise", REVIEW, &[]),
            Steer::Nothing,
            "a revision needs words"
        );
        assert_eq!(
            read("/implement", TaskStatus::ReadyToImplement, &[]),
            Steer::Implement
        );
        assert_eq!(
            read("/CANCEL because", TaskStatus::Implementing, &[]),
            Steer::Cancel
        );
        assert_eq!(read("/retry", TaskStatus::Failed, &[]), Steer::Retry);
        assert_eq!(read("/unknown", REVIEW, &[]), Steer::Revise("/unknown".into()));
    }

    #[test]
    fn answers_in_each_form() {
        let questions = [
            question("q1", "Placement", &["Top", "Bottom"], false),
            question("q2", "Extras", &["Badges", "Links", "Images"], true),
        ];
        let waiting = TaskStatus::WaitingQuestions;
        let expected = vec![
            ("q1".to_string(), vec!["Top".to_string()]),
            ("q2".to_string(), vec!["Badges".to_string(), "Images".to_string()]),
        ];
        for form in ["1. A\n2. A, C", "1) a\n2) A,C", "1: A\n2: A, C"] {
            assert_eq!(answered(read(form, waiting, &questions)), expected, "{form}");
        }
        assert_eq!(
            answered(read(
                "Placement: right after the title\nExtras: B",
                waiting,
                &questions
            )),
            vec![
                ("q1".to_string(), vec!["right after the title".to_string()]),
                ("q2".to_string(), vec!["Links".to_string()]),
            ]
        );
        assert_eq!(
            read("1. A", waiting, &questions),
            Steer::Nothing,
            "every question needs an answer"
        );
        let one = [question("q1", "Placement", &["Top", "Bottom"], false)];
        assert_eq!(
            answered(read("near the top, please", waiting, &one)),
            vec![("q1".to_string(), vec!["near the top, please".to_string()])],
            "free text answers a single question"
        );
        assert_eq!(
            answered(read("A, B", waiting, &one)),
            vec![("q1".to_string(), vec!["A, B".to_string()])],
            "two letters on a single-choice question are text"
        );
    }
}
