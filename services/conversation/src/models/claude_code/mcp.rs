//! The MCP server that offers mainloop's tools to the Claude Code CLI: JSON-RPC 2.0, one message
//! per line (MCP's stdio transport, carried over a Unix socket by `relay`). It answers
//! `initialize`, `ping`, `tools/list` and `tools/call`; notifications are taken silently, and any
//! other method is "method not found". Four methods over lines are written out here rather than
//! taken from an SDK crate: the subset is small and the wire format is fixed by the spec
//! (modelcontextprotocol.io, "Base protocol" and "Tools").

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::models::{Tool, ToolRunner};

/// Protocol versions we speak; a client asking for another gets the newest.
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Serves every connection the CLI makes, one after another, until the listener fails.
pub async fn serve(listener: &UnixListener, tools: &[Tool], runner: &dyn ToolRunner) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        if let Err(err) = session(stream, tools, runner).await {
            tracing::warn!(error = %err, "an MCP session with the CLI broke off");
        }
    }
}

async fn session(stream: UnixStream, tools: &[Tool], runner: &dyn ToolRunner) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).split(b'\n');
    while let Some(line) = lines.next_segment().await? {
        if let Some(answer) = answer(&line, tools, runner).await {
            write.write_all(format!("{answer}\n").as_bytes()).await?;
        }
    }
    Ok(())
}

/// The answer to one line: a response for a request, nothing for a notification or a response.
pub async fn answer(line: &[u8], tools: &[Tool], runner: &dyn ToolRunner) -> Option<Value> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let Ok(message) = serde_json::from_slice::<Value>(line) else {
        return Some(error(Value::Null, -32700, "parse error"));
    };
    let method = message["method"].as_str()?;
    let id = message.get("id")?.clone();
    let params = &message["params"];
    let result = match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            let version = VERSIONS.iter().find(|v| **v == asked).unwrap_or(&VERSIONS[0]);
            json!({"protocolVersion": version, "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "mainloop", "version": env!("CARGO_PKG_VERSION")}})
        }
        "ping" => json!({}),
        "tools/list" => {
            let listed: Vec<Value> = tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.schema}))
                .collect();
            json!({"tools": listed})
        }
        "tools/call" => {
            let name = params["name"].as_str().unwrap_or_default();
            if !tools.iter().any(|t| t.name == name) {
                return Some(error(id, -32602, &format!("unknown tool: {name}")));
            }
            let input = match &params["arguments"] {
                Value::Null => json!({}),
                given => given.clone(),
            };
            let outcome = runner.run(name, &input).await;
            json!({"content": [{"type": "text", "text": outcome.content}], "isError": outcome.is_error})
        }
        other => return Some(error(id, -32601, &format!("method not found: {other}"))),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::models::ToolOutcome;

    struct Echo;

    impl ToolRunner for Echo {
        fn run<'a>(&'a self, name: &'a str, input: &'a Value) -> BoxFuture<'a, ToolOutcome> {
            Box::pin(async move { ToolOutcome::done(format!("{name} {input}")) })
        }
    }

    fn tools() -> Vec<Tool> {
        vec![Tool {
            name: "list_tasks".into(),
            description: "What runs".into(),
            schema: json!({"type": "object", "properties": {}}),
        }]
    }

    async fn ask(line: &str) -> Option<Value> {
        answer(line.as_bytes(), &tools(), &Echo).await
    }

    #[tokio::test]
    async fn it_answers_the_handshake_the_list_and_a_call() {
        let init = ask(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        )
        .await;
        assert_eq!(
            init.as_ref().map(|a| &a["result"]["protocolVersion"]),
            Some(&json!("2025-06-18"))
        );
        assert_eq!(
            init.map(|a| a["result"]["serverInfo"]["name"].clone()),
            Some(json!("mainloop"))
        );
        let newer = ask(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2099-01-01"}}"#,
        )
        .await;
        assert_eq!(
            newer.map(|a| a["result"]["protocolVersion"].clone()),
            Some(json!(VERSIONS[0]))
        );
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await,
            None
        );
        let list = ask(r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).await;
        assert_eq!(
            list,
            Some(
                json!({"jsonrpc": "2.0", "id": "a", "result": {"tools": [{"name": "list_tasks",
                "description": "What runs", "inputSchema": {"type": "object", "properties": {}}}]}})
            )
        );
        let call = ask(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tasks","arguments":{"filter":"active"}}}"#).await;
        assert_eq!(
            call,
            Some(
                json!({"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text",
                "text": "list_tasks {\"filter\":\"active\"}"}], "isError": false}})
            )
        );
    }

    #[tokio::test]
    async fn it_refuses_what_it_does_not_offer_or_cannot_read() {
        let unknown =
            ask(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"Bash","arguments":{}}}"#)
                .await;
        assert_eq!(unknown.map(|a| a["error"]["code"].clone()), Some(json!(-32602)));
        let method = ask(r#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#).await;
        assert_eq!(method.map(|a| a["error"]["code"].clone()), Some(json!(-32601)));
        let garbage = ask("{not json").await;
        assert_eq!(
            garbage,
            Some(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}}))
        );
        assert_eq!(ask(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#).await, None);
    }
}
