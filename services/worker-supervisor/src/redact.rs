//! Secrets never leave through what the agent produces. Every configured secret (the API key,
//! the subscription token, the GitHub token) is removed from the agent's log lines, plan,
//! questions and summary before they are stored or published (so from PR and issue bodies and
//! the commit messages mainloop writes): as written, base64 (standard and URL-safe, with or
//! without padding), percent-encoded, hex, and with whitespace between its characters. The same
//! pass makes text safe to store: NUL, which Postgres refuses, becomes a visible `␀`. What the
//! agent committed cannot be rewritten, so it is checked instead ([`Redactor::finds_secret`]):
//! commits holding a secret are never pushed.

use base64::Engine;

const REDACTED: &str = "[redacted]";
/// Shorter values are not secrets worth the false positives.
const MIN_SECRET: usize = 6;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Each secret's written forms, longest first.
    forms: Vec<String>,
    /// Each secret, for the whitespace-tolerant match.
    secrets: Vec<Vec<char>>,
}

impl Redactor {
    pub fn new(secrets: &[String]) -> Self {
        let secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= MIN_SECRET).collect();
        let mut forms: Vec<String> = secrets.iter().flat_map(|s| encodings(s)).collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Redactor {
            forms,
            secrets: secrets.iter().map(|s| s.chars().collect()).collect(),
        }
    }

    /// Whether `text` holds any form of any secret.
    /// The job's commits may be pushed only if none holds a configured secret (in a message or
    /// a patch). They cannot be cleaned without rewriting the agent's work, so nothing is pushed
    /// and the person is told why (a final failure).
    pub fn refuse_secrets(&self, commits_text: &str) -> Result<(), String> {
        if self.finds_secret(commits_text) {
            return Err(
                "the agent's commits contain a configured secret (an API key or token); nothing was \
                 pushed. Retry the task, or tell the agent not to write credentials."
                    .into(),
            );
        }
        Ok(())
    }

    pub fn finds_secret(&self, text: &str) -> bool {
        self.forms.iter().any(|form| text.contains(form.as_str()))
            || self
                .secrets
                .iter()
                .any(|secret| without_spaced(text, secret) != text)
    }

    /// `text` with every form of every secret replaced, and NUL made visible.
    pub fn clean(&self, text: &str) -> String {
        let mut text = mainloop_events::text::storable(text).into_owned();
        for form in &self.forms {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
        for secret in &self.secrets {
            text = without_spaced(&text, secret);
        }
        text
    }
}

fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let engines = [
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ];
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let percent: String = bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                char::from(*b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut forms = vec![secret.to_string(), hex.to_uppercase(), hex, percent];
    forms.extend(engines);
    forms
}

/// Replaces copies of `secret` with whitespace between its characters ("s k - a b c").
fn without_spaced(text: &str, secret: &[char]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match spaced_match(&chars[i..], secret) {
            Some(len) => {
                out.push_str(REDACTED);
                i += len;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// The length of a match of `secret` at the start of `text`, whitespace allowed between characters.
fn spaced_match(text: &[char], secret: &[char]) -> Option<usize> {
    let (mut t, mut s) = (0, 0);
    while s < secret.len() {
        if text.get(t)? == &secret[s] {
            s += 1;
            t += 1;
        } else if s > 0 && text.get(t)?.is_whitespace() {
            t += 1;
        } else {
            return None;
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::Redactor;

    #[test]
    fn every_form_of_a_secret_is_removed() {
        let key = "sk-ant-api03-SECRETvalue+/=42";
        let redactor = Redactor::new(&[key.to_string(), "short".into()]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        let spaced: String = key.chars().map(|c| format!("{c} ")).collect();
        let text = format!(
            "plain {key}; b64 {b64}; url {url}; hex {hex}; pct sk-ant-api03-SECRETvalue%2B%2F%3D42; spaced {spaced}; short stays"
        );
        let clean = redactor.clean(&text);
        assert!(
            !clean.contains("SECRET") && !clean.contains(&b64) && !clean.contains(&hex),
            "{clean}"
        );
        assert_eq!(clean.matches("[redacted]").count(), 6, "{clean}");
        assert!(clean.ends_with("short stays"), "too short to be a secret");
    }

    #[test]
    fn a_secret_is_found_in_any_form_and_nothing_else_is() {
        let key = "sk-ant-api03-SECRETvalue+/=42";
        let redactor = Redactor::new(&[key.to_string()]);
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        let spaced: String = key.chars().map(|c| format!("{c} ")).collect();
        for text in [
            format!("+key = {key}"),
            format!("diff: {hex}"),
            format!("msg {spaced}"),
        ] {
            assert!(redactor.finds_secret(&text), "{text}");
        }
        assert!(!redactor.finds_secret("+key = sk-ant-api03-[redacted]\0"));
    }

    #[test]
    fn nul_becomes_visible() {
        assert_eq!(Redactor::new(&[]).clean("a\0b"), "a␀b");
    }
}
