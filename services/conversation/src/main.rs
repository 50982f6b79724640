use mainloop_conversation::{Config, NAME, run};

fn main() -> anyhow::Result<()> {
    // Started by the Claude Code CLI as mainloop's MCP server (see `models::claude_code`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("mcp-relay", rest)) = args.split_first().map(|(a, r)| (a.as_str(), r)) {
        std::process::exit(mainloop_conversation::models::claude_code::relay::main(rest));
    }
    mainloop_runtime::service::main(NAME, Config::health, run)
}
