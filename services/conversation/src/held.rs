//! A turn may start before the store has confirmed what it was started with (see `memory`).
//! Until then its tools wait (`Toolbox`) and its words, said as they come, may yet be taken
//! back (`Speech::while_speaking`); [`Go`] is the word that ends the wait, given once: yes (the
//! turn stands and acts) or no (the turn is dropped, what it said retracted, and it is started
//! again on what the store read). No word — the giver dropped — is a no.

use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::oneshot;

/// The word a turn waits for; every clone hears the same one.
#[derive(Clone)]
pub struct Go(Shared<oneshot::Receiver<bool>>);

/// Gives the word, once.
pub struct Giving(oneshot::Sender<bool>);

/// A word not given yet, and the one who gives it.
pub fn go() -> (Giving, Go) {
    let (giving, go) = oneshot::channel();
    (Giving(giving), Go(go.shared()))
}

impl Go {
    /// A word given already: yes.
    pub fn now() -> Go {
        let (giving, go) = self::go();
        giving.give(true);
        go
    }

    /// Waits for the word: whether the turn may speak and act.
    pub async fn given(&self) -> bool {
        self.0.clone().await.unwrap_or(false)
    }
}

impl Giving {
    pub fn give(self, yes: bool) {
        // Nobody waiting (the turn needed no word) is fine.
        let _ = self.0.send(yes);
    }
}

#[cfg(test)]
mod tests {
    use super::{Go, go};

    #[tokio::test]
    async fn every_waiter_hears_the_one_word_and_silence_is_no() {
        assert!(Go::now().given().await);
        let (giving, word) = go();
        let other = word.clone();
        let waiting = tokio::spawn(async move { other.given().await });
        giving.give(false);
        assert!(!word.given().await);
        assert!(matches!(waiting.await, Ok(false)));
        let (giving, word) = go();
        drop(giving);
        assert!(!word.given().await);
    }
}
