//! What a push says: which items call the person back, and the notification's words. The
//! service worker shows `title` and `body`, opens `task_id` when clicked, and offers "Approve
//! plan" on a plan review (approving `plan_revision`, so a newer plan is never approved blind).

use mainloop_events::v1::{InboxItemAdded, InboxItemType};
use serde::Serialize;

/// The body is cut here; push services carry at most 4 KiB, encryption included.
const BODY_CHARS: usize = 240;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// The item's kind as the API names it (`plan_review`, `question`, …).
    pub kind: &'static str,
    pub task_id: String,
    pub item_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_revision: Option<u64>,
}

/// The notification for `item`, or `None` for items that need nothing from the person.
pub fn for_item(item: &InboxItemAdded) -> Option<Notification> {
    let (kind, what) = match item.item_type() {
        InboxItemType::PlanReview => ("plan_review", "A plan to review"),
        InboxItemType::Question => ("question", "Questions for you"),
        InboxItemType::CodeReady => ("code_ready", "Code ready for your review"),
        InboxItemType::Error => ("error", "A task failed"),
        InboxItemType::RoutingSuggestion => ("routing_suggestion", "Where should your message go?"),
        InboxItemType::Approval => ("approval", "Your approval is needed"),
        InboxItemType::Notification | InboxItemType::FeedbackAddressed | InboxItemType::Unspecified => {
            return None;
        }
    };
    let context: serde_json::Value = serde_json::from_str(&item.context_json).unwrap_or_default();
    Some(Notification {
        title: format!("mainloop: {what}"),
        body: item.title.chars().take(BODY_CHARS).collect(),
        kind,
        task_id: item.task_id.clone(),
        item_id: item.item_id.clone(),
        plan_revision: context["plan_revision"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: InboxItemType, context: &str) -> InboxItemAdded {
        InboxItemAdded {
            item_id: "i1".into(),
            task_id: "t1".into(),
            item_type: kind as i32,
            title: "Review the plan: add rate limiting".into(),
            context_json: context.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_plan_review_names_the_task_and_the_revision_to_approve() {
        assert_eq!(
            for_item(&item(InboxItemType::PlanReview, r#"{"plan_revision": 2}"#)),
            Some(Notification {
                title: "mainloop: A plan to review".into(),
                body: "Review the plan: add rate limiting".into(),
                kind: "plan_review",
                task_id: "t1".into(),
                item_id: "i1".into(),
                plan_revision: Some(2),
            })
        );
    }

    #[test]
    fn only_what_needs_the_person_is_pushed() {
        for kind in [InboxItemType::Notification, InboxItemType::FeedbackAddressed] {
            assert_eq!(for_item(&item(kind, "{}")), None);
        }
        let failed = for_item(&item(InboxItemType::Error, "not json")).map(|n| (n.kind, n.plan_revision));
        assert_eq!(failed, Some(("error", None)));
    }
}
