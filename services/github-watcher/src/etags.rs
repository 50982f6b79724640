//! Remembered answers for conditional requests. Every `GET` answer that carries an `ETag` is kept
//! with it; the next `GET` of the same route sends `If-None-Match`, and GitHub's `304 Not
//! Modified` (no body, and free of the rate limit) is answered from here. Bounded: when full, the
//! memory is dropped and refilled by the next answers (each costs one full answer again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use http::header::{ETAG, HeaderValue, IF_NONE_MATCH};
use serde_json::Value;

/// Routes remembered at once (a few per watched pull request).
const CAPACITY: usize = 4096;

#[derive(Clone)]
struct Remembered {
    etag: HeaderValue,
    value: Value,
    headers: HeaderMap,
}

#[derive(Clone, Default)]
pub struct Etags {
    answers: Arc<Mutex<HashMap<String, Remembered>>>,
}

impl Etags {
    /// The `If-None-Match` header for `route`, when an answer is remembered.
    pub fn ask(&self, route: &str) -> Option<HeaderMap> {
        let answers = self.answers.lock().ok()?;
        let remembered = answers.get(route)?;
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, remembered.etag.clone());
        Some(headers)
    }

    /// The remembered answer, for a 304.
    pub fn unchanged(&self, route: &str) -> Option<(Value, HeaderMap)> {
        let answers = self.answers.lock().ok()?;
        answers.get(route).map(|r| (r.value.clone(), r.headers.clone()))
    }

    /// Keeps a fresh answer when it has an ETag.
    pub fn keep(&self, route: &str, value: &Value, headers: &HeaderMap) {
        let Some(etag) = headers.get(ETAG) else { return };
        if let Ok(mut answers) = self.answers.lock() {
            if answers.len() >= CAPACITY && !answers.contains_key(route) {
                answers.clear();
            }
            answers.insert(
                route.to_string(),
                Remembered {
                    etag: etag.clone(),
                    value: value.clone(),
                    headers: headers.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::{ETAG, HeaderValue, IF_NONE_MATCH};
    use serde_json::json;

    use super::Etags;

    #[test]
    fn an_answer_with_an_etag_is_asked_for_conditionally_and_served_on_304() {
        let etags = Etags::default();
        assert!(etags.ask("/a").is_none());
        let mut headers = HeaderMap::new();
        etags.keep("/a", &json!({"n": 1}), &headers);
        assert!(etags.ask("/a").is_none(), "no ETag, nothing kept");
        headers.insert(ETAG, HeaderValue::from_static("W/\"1\""));
        etags.keep("/a", &json!({"n": 1}), &headers);
        let asked = etags.ask("/a").unwrap_or_default();
        assert_eq!(
            asked.get(IF_NONE_MATCH),
            Some(&HeaderValue::from_static("W/\"1\""))
        );
        assert_eq!(etags.unchanged("/a").map(|(v, _)| v), Some(json!({"n": 1})));
    }
}
