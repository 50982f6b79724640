//! What the model remembers of each conversation — its summary and its newest messages word for
//! word — kept here after each turn, so the next turn can ask the model at once, beside the
//! statement that stores the person's message, instead of after it. Only a guess until that
//! statement answers: a turn started on it says nothing and runs no tool before the store has
//! confirmed the guess was current (the same summary, and exactly as many messages as
//! remembered; see `held`), so a turn taken meanwhile in another replica or another tab, or a
//! compaction, sends the turn back to what the store read. A new conversation needs no guess:
//! it has nothing to remember. At most `CONVERSATIONS` are kept, the least recently used let go.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;

use crate::models::{Message, Role};

/// Messages given word for word at most, should compaction lag behind.
pub const RECENT_AT_MOST: usize = 60;

/// Conversations remembered at most.
const CONVERSATIONS: NonZeroUsize = match NonZeroUsize::new(4096) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// One conversation as the model sees it before a message: whose it is, its summary (and the
/// message the summary goes to), its newest messages after that (oldest first) and how many
/// messages it has in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    pub user: String,
    pub summary: Option<String>,
    pub summarized_through: Option<String>,
    pub recent: VecDeque<(Role, Arc<str>)>,
    pub count: i64,
}

impl Remembered {
    /// A conversation about to start: nothing in it.
    pub fn new_conversation(user: &str) -> Self {
        Remembered {
            user: user.to_string(),
            summary: None,
            summarized_through: None,
            recent: VecDeque::new(),
            count: 0,
        }
    }

    /// Whether `stored` (what the store read) is this conversation as remembered.
    pub fn current(&self, stored: &Remembered) -> bool {
        self.user == stored.user
            && self.count == stored.count
            && self.summarized_through == stored.summarized_through
    }

    /// The messages the model is given with `latest`: the recent ones and it, starting with one
    /// of the person's.
    pub fn history(&self, latest: &str) -> Vec<Message> {
        self.recent
            .iter()
            .map(|(role, content)| (*role, &**content))
            .chain([(Role::User, latest)])
            .skip_while(|(role, _)| *role == Role::Assistant)
            .map(|(role, content)| Message::text(role, content))
            .collect()
    }

    /// The conversation after a turn: `said` and `reply` added, when the conversation now has
    /// `count` messages — two more than before; otherwise something else was written meanwhile
    /// and what is remembered would be wrong (None).
    pub fn after_turn(mut self, said: &str, reply: &str, count: i64) -> Option<Remembered> {
        if count != self.count + 2 {
            return None;
        }
        self.recent.push_back((Role::User, said.into()));
        self.recent.push_back((Role::Assistant, reply.into()));
        while self.recent.len() > RECENT_AT_MOST {
            self.recent.pop_front();
        }
        self.count = count;
        Some(self)
    }
}

/// The conversations remembered, shared by the turns of this process.
#[derive(Clone)]
pub struct Memory {
    kept: Arc<Mutex<LruCache<String, Remembered>>>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            kept: Arc::new(Mutex::new(LruCache::new(CONVERSATIONS))),
        }
    }
}

impl Memory {
    fn kept(&self) -> MutexGuard<'_, LruCache<String, Remembered>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The conversation as remembered, when it is `user`'s.
    pub fn recall(&self, user: &str, conversation: &str) -> Option<Remembered> {
        self.kept()
            .get(conversation)
            .filter(|remembered| remembered.user == user)
            .cloned()
    }

    /// Remembers the conversation as `remembered`, unless something newer is kept.
    pub fn keep(&self, conversation: &str, remembered: Remembered) {
        let mut kept = self.kept();
        if kept
            .peek(conversation)
            .is_none_or(|known| known.count < remembered.count)
        {
            kept.put(conversation.to_string(), remembered);
        }
    }

    pub fn forget(&self, conversation: &str) {
        self.kept().pop(conversation);
    }

    /// Forgets every conversation (a test suite's reset).
    pub fn forget_all(&self) {
        self.kept().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{Memory, RECENT_AT_MOST, Remembered};
    use crate::models::{Message, Role};

    #[test]
    fn a_turn_adds_both_messages_only_when_nothing_else_was_written() {
        let start = Remembered::new_conversation("alice");
        let Some(after) = start.clone().after_turn("hi", "hello", 2) else {
            panic!("a turn of two messages is remembered");
        };
        assert_eq!(after.count, 2);
        assert_eq!(
            after.history("more"),
            [
                Message::text(Role::User, "hi"),
                Message::text(Role::Assistant, "hello"),
                Message::text(Role::User, "more"),
            ]
        );
        // Another message was stored between this one and its reply: forgotten.
        assert_eq!(start.after_turn("hi", "hello", 3), None);
    }

    #[test]
    fn history_keeps_the_newest_and_starts_with_the_person() {
        let mut remembered = Remembered::new_conversation("alice");
        for n in 0..40 {
            let count = remembered.count + 2;
            let Some(next) = remembered.after_turn(&format!("q{n}"), &format!("a{n}"), count) else {
                panic!("turn {n} is remembered");
            };
            remembered = next;
        }
        assert_eq!(remembered.recent.len(), RECENT_AT_MOST);
        let history = remembered.history("latest");
        // The 60 newest are q10..a39; none is dropped, and the first is the person's.
        assert_eq!(history.len(), RECENT_AT_MOST + 1);
        assert_eq!(history[0], Message::text(Role::User, "q10"));
        // Were the oldest kept an answer, it would be left out.
        remembered.recent.pop_front();
        let history = remembered.history("latest");
        assert_eq!(history.len(), RECENT_AT_MOST - 1);
        assert_eq!(history[0], Message::text(Role::User, "q11"));
    }

    #[test]
    fn only_the_owner_recalls_and_older_never_replaces_newer() {
        let memory = Memory::default();
        let older = Remembered::new_conversation("alice");
        let Some(newer) = older.clone().after_turn("hi", "hello", 2) else {
            panic!("a turn of two messages is remembered");
        };
        memory.keep("c1", newer.clone());
        memory.keep("c1", older);
        assert_eq!(memory.recall("alice", "c1"), Some(newer.clone()));
        assert_eq!(memory.recall("mallory", "c1"), None);
        assert!(newer.current(&newer.clone()));
        let compacted = Remembered {
            summarized_through: Some("m1".into()),
            ..newer.clone()
        };
        assert!(!newer.current(&compacted));
        memory.forget("c1");
        assert_eq!(memory.recall("alice", "c1"), None);
    }
}
