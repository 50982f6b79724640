//! `mainloop tokens`: per-person API tokens for teams (the gateway's `token` and `proxy` modes
//! accept them). Made here and shown once, kept only as hashes in the gateway's schema, listed
//! without their secret, revoked at once.

use std::time::Duration;

use mainloop_gateway::api_tokens;
use mainloop_runtime::Secret;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    /// The database the gateway uses.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Make a token for a person (named as the sign-in proxy names them, e.g. an email).
    Create {
        person: String,
        /// What the token is for (a laptop, a CI job).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The tokens (of one person), without their secrets.
    List {
        #[arg(long)]
        person: Option<String>,
    },
    /// Revoke a token by its id; it stops working at once.
    Revoke { id: String },
}

pub async fn tokens(args: TokensArgs) -> anyhow::Result<()> {
    let db = mainloop_runtime::db::connect(
        &args.database_url,
        mainloop_gateway::SCHEMA,
        2,
        Duration::from_secs(10),
        &CancellationToken::new(),
    )
    .await?;
    mainloop_runtime::db::migrate(&db, mainloop_gateway::SCHEMA, &mainloop_gateway::MIGRATOR).await?;
    match args.command {
        TokensCommand::Create { person, label } => {
            let (id, token) = api_tokens::create(&db, &person, &label).await?;
            println!("{token}");
            eprintln!("token {id} for {person}: shown this once; send it as `Authorization: Bearer <token>`");
        }
        TokensCommand::List { person } => {
            for token in api_tokens::list(&db, person.as_deref()).await? {
                let state = token
                    .revoked_at
                    .map(|at| format!("revoked {}", at.format("%Y-%m-%d %H:%M")))
                    .unwrap_or_else(|| "active".into());
                println!(
                    "{}\t{}\t{}\t{}\t{state}",
                    token.id,
                    token.user_id,
                    token.label,
                    token.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        TokensCommand::Revoke { id } => {
            anyhow::ensure!(api_tokens::revoke(&db, &id).await?, "no token {id} in use");
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}
