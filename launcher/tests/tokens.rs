//! `mainloop tokens` against a real Postgres: a token made for a person is printed once and
//! listed without its secret, revoked once, and a second revocation is an error.

use std::process::Command;

use mainloop_testkit::TestPostgres;

fn tokens(url: &str, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_mainloop"))
        .arg("tokens")
        .args(args)
        .env("DATABASE_URL", url)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

#[test]
fn tokens_are_made_listed_without_their_secret_and_revoked() -> anyhow::Result<()> {
    let pg = TestPostgres::start()?;
    let url = pg.url();
    let (ok, token, said) = tokens(&url, &["create", "alice@example.com", "--label", "laptop"])?;
    assert!(ok, "{said}");
    assert!(token.starts_with("mlt_") && token.len() > 40, "{token}");
    let id = said
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches(':')
        .to_string();
    assert!(id.starts_with("tok_"), "{said}");

    let (ok, listed, said) = tokens(&url, &["list"])?;
    assert!(ok, "{said}");
    let columns: Vec<&str> = listed.split('\t').collect();
    assert_eq!(columns[..3], [id.as_str(), "alice_40example_2ecom", "laptop"]);
    assert_eq!(columns.last(), Some(&"active"));
    assert!(!listed.contains(&token), "the list shows the secret");

    let (ok, _, said) = tokens(&url, &["revoke", &id])?;
    assert!(ok, "{said}");
    let (_, listed, _) = tokens(&url, &["list", "--person", "alice@example.com"])?;
    assert!(
        listed
            .rsplit('\t')
            .next()
            .is_some_and(|s| s.starts_with("revoked ")),
        "{listed}"
    );
    let (ok, _, said) = tokens(&url, &["revoke", &id])?;
    assert!(!ok, "revoked twice");
    assert!(said.contains("no token"), "{said}");
    Ok(())
}
