//! The fake GitHub's endpoints that read or move the real git repositories answer as GitHub
//! does: the commits of a branch, 404 for one that does not exist (a name is never one of git's
//! options), a pull request's files, and merges that move the base branch one at a time, two at
//! once both landing and a second merge of one pull request refused.

use mainloop_fakes::github::FakeGitHub;
use mainloop_testkit::git;
use serde_json::{Value, json};

const TOKEN: &str = "ghp_test";

struct Server {
    http: reqwest::Client,
    base: String,
    _root: tempfile::TempDir,
}

impl Server {
    async fn start() -> anyhow::Result<(Server, std::path::PathBuf)> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = FakeGitHub::new(root.path().to_path_buf(), TOKEN)
            .serve(listener)
            .await?;
        let repos = root.path().to_path_buf();
        let server = Server {
            http: reqwest::Client::new(),
            base,
            _root: root,
        };
        Ok((server, repos))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or(Value::Null)))
    }
}

#[tokio::test]
async fn commits_files_and_merges_come_from_the_real_repository() -> anyhow::Result<()> {
    use reqwest::Method;
    let (gh, repos) = Server::start().await?;
    let created = gh
        .call(
            Method::POST,
            "/_control/repos",
            Some(json!({"owner": "acme", "name": "widgets"})),
        )
        .await?;
    assert_eq!(created.0, 201, "{}", created.1);

    let (status, commits) = gh
        .call(Method::GET, "/repos/acme/widgets/commits?sha=main", None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(commits[0]["commit"]["message"], "Initial commit");
    let (status, missing) = gh
        .call(Method::GET, "/repos/acme/widgets/commits?sha=nope", None)
        .await?;
    assert_eq!(
        (status, missing["message"].as_str()),
        (404, Some("No commit found for SHA: nope"))
    );
    // A branch name is never taken for one of git's options.
    let written = repos.join("written");
    let (status, _) = gh
        .call(
            Method::GET,
            &format!("/repos/acme/widgets/commits?sha=--output={}", written.display()),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    assert!(!written.exists(), "git wrote where the query said");

    // A branch with one change, as a worker's push leaves it.
    let work = repos.join("work");
    let bare = repos.join("acme").join("widgets.git");
    git(&repos, &["clone", "-q", &bare.display().to_string(), "work"])?;
    git(&work, &["checkout", "-q", "-b", "feature"])?;
    std::fs::write(work.join("NEW.md"), "one\ntwo\n")?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-qm", "Add NEW.md"])?;
    git(&work, &["push", "-q", "origin", "feature"])?;
    let head = git(&work, &["rev-parse", "HEAD"])?;

    let (status, pull) = gh
        .call(
            Method::POST,
            "/repos/acme/widgets/pulls",
            Some(json!({"title": "New", "head": "feature", "base": "main", "body": "", "draft": false})),
        )
        .await?;
    assert_eq!(status, 201, "{pull}");
    let number = pull["number"].as_u64().unwrap_or_default();
    let (status, files) = gh
        .call(
            Method::GET,
            &format!("/repos/acme/widgets/pulls/{number}/files"),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        (&files[0]["filename"], &files[0]["status"], &files[0]["additions"]),
        (&json!("NEW.md"), &json!("added"), &json!(2))
    );

    // A second pull request from another branch; both merged at once, one after the other.
    git(&work, &["checkout", "-q", "-b", "second", "main"])?;
    std::fs::write(work.join("SECOND.md"), "two\n")?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-qm", "Add SECOND.md"])?;
    git(&work, &["push", "-q", "origin", "second"])?;
    let (status, second) = gh
        .call(
            Method::POST,
            "/repos/acme/widgets/pulls",
            Some(json!({"title": "Second", "head": "second", "base": "main", "body": "", "draft": false})),
        )
        .await?;
    assert_eq!(status, 201, "{second}");
    let merge = |n: u64| format!("/_control/repos/acme/widgets/pulls/{n}/merge");
    let (first_merge, second_merge) = (
        merge(number),
        merge(second["number"].as_u64().unwrap_or_default()),
    );
    let (one, two) = tokio::join!(
        gh.call(Method::POST, &first_merge, None),
        gh.call(Method::POST, &second_merge, None)
    );
    let ((one, merged), (two, _)) = (one?, two?);
    assert_eq!((one, two), (200, 200));
    assert_eq!(merged["sha"], json!(head));
    let main = git(&bare, &["rev-parse", "main"])?;
    assert!(
        main == head || main == git(&work, &["rev-parse", "second"])?,
        "{main}"
    );
    let (status, again) = gh.call(Method::POST, &first_merge, None).await?;
    assert_eq!(
        (status, again["message"].as_str()),
        (405, Some("Pull Request is not mergeable"))
    );
    Ok(())
}
