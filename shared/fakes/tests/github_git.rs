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

    /// A branch made from `main` in `work` with one new file, pushed as a worker pushes, and its
    /// pull request into `main`; the pull request's number and the branch's head.
    async fn pushed_pull(
        &self,
        work: &std::path::Path,
        branch: &str,
        file: &str,
        content: &str,
    ) -> anyhow::Result<(u64, String)> {
        git(work, &["checkout", "-q", "-b", branch, "main"])?;
        std::fs::write(work.join(file), content)?;
        git(work, &["add", "-A"])?;
        git(work, &["commit", "-qm", &format!("Add {file}")])?;
        git(work, &["push", "-q", "origin", branch])?;
        let head = git(work, &["rev-parse", "HEAD"])?;
        let (status, pull) = self
            .call(
                reqwest::Method::POST,
                "/repos/acme/widgets/pulls",
                Some(json!({"title": file, "head": branch, "base": "main", "body": "", "draft": false})),
            )
            .await?;
        anyhow::ensure!(status == 201, "{pull}");
        Ok((pull["number"].as_u64().unwrap_or_default(), head))
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
    let (number, head) = gh.pushed_pull(&work, "feature", "NEW.md", "one\ntwo\n").await?;
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
    let (second, second_head) = gh.pushed_pull(&work, "second", "SECOND.md", "two\n").await?;
    let merge = |n: u64| format!("/_control/repos/acme/widgets/pulls/{n}/merge");
    let (first_merge, second_merge) = (merge(number), merge(second));
    let (one, two) = tokio::join!(
        gh.call(Method::POST, &first_merge, None),
        gh.call(Method::POST, &second_merge, None)
    );
    let ((one, merged), (two, _)) = (one?, two?);
    assert_eq!((one, two), (200, 200));
    assert_eq!(merged["sha"], json!(head));
    let main = git(&bare, &["rev-parse", "main"])?;
    assert!(main == head || main == second_head, "{main}");
    let (status, again) = gh.call(Method::POST, &first_merge, None).await?;
    assert_eq!(
        (status, again["message"].as_str()),
        (405, Some("Pull Request is not mergeable"))
    );
    Ok(())
}
