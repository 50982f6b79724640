//! Text from outside (models, agents, GitHub) made storable where it enters: NUL, which Postgres
//! refuses in text and which JSON carries as `\u0000`, becomes a visible `␀`. Everything else is
//! kept as written. One definition, so every boundary cleans the same way.

use std::borrow::Cow;

use serde_json::Value;

/// What a NUL becomes: visible, so the person sees that something was there.
pub const NUL_SHOWN_AS: &str = "␀";

/// `text` with every NUL shown as `␀`; borrowed when there was none.
pub fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', NUL_SHOWN_AS))
    } else {
        Cow::Borrowed(text)
    }
}

/// Makes every string (and object key) in `value` storable, in place; returns how many changed.
pub fn make_storable(value: &mut Value) -> usize {
    match value {
        Value::String(text) if text.contains('\0') => {
            *text = text.replace('\0', NUL_SHOWN_AS);
            1
        }
        Value::Array(items) => items.iter_mut().map(make_storable).sum(),
        Value::Object(fields) => {
            let mut changed = 0;
            if fields.keys().any(|k| k.contains('\0')) {
                let renamed: serde_json::Map<String, Value> = std::mem::take(fields)
                    .into_iter()
                    .map(|(k, v)| (storable(&k).into_owned(), v))
                    .collect();
                changed += 1;
                *fields = renamed;
            }
            changed + fields.values_mut().map(make_storable).sum::<usize>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{make_storable, storable};

    #[test]
    fn nul_is_shown_and_everything_else_kept() {
        assert_eq!(storable("plan\0 text\t\u{1b}é"), "plan␀ text\t\u{1b}é");
        assert!(matches!(storable("clean"), std::borrow::Cow::Borrowed("clean")));
        let mut reply =
            json!({"content": [{"type": "text", "text": "a\u{0}b"}], "k\u{0}": ["\u{0}", 1, null]});
        assert_eq!(make_storable(&mut reply), 3);
        assert_eq!(
            reply,
            json!({"content": [{"type": "text", "text": "a␀b"}], "k␀": ["␀", 1, null]})
        );
        assert_eq!(make_storable(&mut reply), 0, "already clean");
    }
}
