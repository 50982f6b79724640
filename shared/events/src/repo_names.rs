//! GitHub's rules for repository owners and names, checked wherever a repository enters
//! mainloop (a chat message, a spawn command), so `..`, `-u` or `a/b` never reach a URL path.

/// A user or organisation login: letters, digits and single hyphens, not at either end, at most
/// 39 characters.
pub fn valid_owner(owner: &str) -> bool {
    (1..=39).contains(&owner.len())
        && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--")
}

/// A repository name: letters, digits, `-`, `_` and `.`, at most 100 characters, and not `.`
/// or `..` (nor starting with a hyphen, which git would read as an option).
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != ".."
        && !name.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::{valid_name, valid_owner};

    #[test]
    fn githubs_rules() {
        for ok in ["acme", "a", "my-org", "A1"] {
            assert!(valid_owner(ok), "{ok}");
        }
        for bad in ["", "..", "-u", "a-", "a--b", "a_b", "a.b", "a/b", &"x".repeat(40)] {
            assert!(!valid_owner(bad), "{bad}");
        }
        for ok in ["widgets", "me.github.io", "a_b-c", ".github"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "-u", "a/b", "a b", &"x".repeat(101)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
