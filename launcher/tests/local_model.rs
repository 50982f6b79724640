//! `mainloop up` picks what it finds: with no Anthropic key, a local Ollama (here a fake one at
//! `OLLAMA_HOST`, speaking Ollama's OpenAI-compatible API) becomes the chat model, `up` says so,
//! and a chat turn is answered by it, streamed.

mod common;

use common::{Mainloop, Outside};
use mainloop_fakes::openai::FakeOllama;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_chats_with_a_local_ollama_when_there_is_no_anthropic_key() -> anyhow::Result<()> {
    let Outside {
        dir,
        github_url,
        http,
        ..
    } = Outside::start("mainloop-ollama-", None).await?;
    let ollama = FakeOllama::new("llama3.2", "Hello from a local model.");
    let host = ollama
        .clone()
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let up = Mainloop::start_with(
        &dir.path().join(".mainloop"),
        port,
        &github_url,
        "gh",
        "http://127.0.0.1:9",
        "",
        // No Claude Code login to find instead, whatever this machine's user has.
        &[
            ("OLLAMA_HOST", host.as_str()),
            (
                "CLAUDE_CONFIG_DIR",
                &dir.path().join("no-claude").display().to_string(),
            ),
        ],
    )?;
    let said = format!("Chat LLM:  OpenAI-compatible server at http://{host}/v1, model llama3.2");
    assert!(up.printed.iter().any(|l| l == &said), "{:?}", up.printed);
    let answer: Value = http
        .post(format!("{base}/chat"))
        .header("x-user-id", "alice")
        .json(&json!({"message": "hi"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(answer["message"]["content"], "Hello from a local model.");
    let asked = ollama.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["model"], "llama3.2");
    assert_eq!(asked[0]["stream"], true);
    assert_eq!(asked[0]["messages"][0]["role"], "system");
    Ok(())
}
