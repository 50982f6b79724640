//! Repository URLs as people type them: `https://github.com/acme/widgets`, with or without
//! `.git`, a trailing slash, or a deeper path (`/tree/main/src`). Names like `x.github.io` keep
//! their dots; anything else is refused with the reason.

use mainloop_events::v1::RepoRef;

pub fn parse(url: &str, web_base: &str) -> Result<RepoRef, String> {
    let base = web_base.trim_end_matches('/');
    let rest = url
        .trim()
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| format!("{url:?} is not a repository on {base}"))?;
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let (Some(owner), Some(name)) = (parts.next(), parts.next()) else {
        return Err(format!("{url:?} does not name a repository ({base}/OWNER/NAME)"));
    };
    let name = name.strip_suffix(".git").unwrap_or(name);
    if !mainloop_events::repo_names::valid_owner(owner) || !mainloop_events::repo_names::valid_name(name) {
        return Err(format!("{owner}/{name} is not a valid repository name"));
    }
    Ok(RepoRef {
        owner: owner.to_string(),
        name: name.to_string(),
        html_url: format!("{base}/{owner}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn repository_urls_as_people_type_them() {
        let ok = |url: &str| parse(url, "https://github.com").map(|r| format!("{}/{}", r.owner, r.name));
        assert_eq!(ok("https://github.com/acme/widgets"), Ok("acme/widgets".into()));
        assert_eq!(
            ok("https://github.com/acme/widgets.git"),
            Ok("acme/widgets".into())
        );
        assert_eq!(
            ok("https://github.com/acme/widgets/tree/main/src"),
            Ok("acme/widgets".into())
        );
        assert_eq!(
            ok("https://github.com/me/me.github.io/"),
            Ok("me/me.github.io".into()),
            "dots survive"
        );
        assert!(ok("https://gitlab.com/acme/widgets").is_err());
        assert!(ok("https://github.com/acme").is_err());
        assert!(ok("https://github.com/ac me/x").is_err());
        assert!(ok("https://github.com/../acme").is_err());
        assert!(ok("https://github.com/-u/x").is_err());
        assert!(ok("https://github.com/acme/..").is_err());
    }
}
