use mainloop_runtime::{CommonConfig, Health, Secret};

use crate::auth::AuthMode;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,
    #[command(flatten)]
    pub http: HttpConfig,
}

/// How the gateway faces browsers; `mainloop up` takes the same flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Where the HTTP API, the SSE feed and the web app are served.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    /// local: one user, no login (loopback only); token: a bearer token; proxy: the user an
    /// identity-aware proxy names; test: X-User-ID.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value = "local")]
    pub auth_mode: AuthMode,
    /// The token for `--auth-mode token`, from the environment only (never a command line,
    /// where `ps` shows it); or see `--api-token-file`.
    #[arg(skip = std::env::var("MAINLOOP_API_TOKEN").ok().filter(|t| !t.is_empty()).map(Secret::new))]
    pub api_token: Option<Secret>,
    /// A file holding the token for `--auth-mode token`.
    #[arg(long, env = "MAINLOOP_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
    /// Host names the gateway answers to besides loopback (its public name behind a proxy),
    /// comma-separated. Requests for any other `Host` are refused (DNS rebinding).
    #[arg(long, env = "PUBLIC_HOSTS", value_delimiter = ',')]
    pub public_hosts: Vec<String>,
    /// The user that local and token modes act as.
    #[arg(long, env = "MAINLOOP_USER", default_value = crate::auth::LOCAL_USER)]
    pub user: String,
    /// Extra browser origins allowed to call the API, comma-separated.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// The secret GitHub signs webhook deliveries with (`GITHUB_WEBHOOK_SECRET`, environment
    /// only). Without it `POST /webhooks/github` refuses every delivery.
    #[arg(skip = std::env::var("GITHUB_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty()).map(Secret::new))]
    pub github_webhook_secret: Option<Secret>,
    /// Seconds `/events` stays quiet before it says `heartbeat`.
    #[arg(long, env = "SSE_HEARTBEAT_SECS", default_value_t = 30)]
    pub sse_heartbeat_secs: u64,
    #[command(flatten)]
    pub proxy: crate::auth::proxy::ProxySettings,
    /// A listener already bound to `http_addr` (by `mainloop up`, first thing, so the port is
    /// its own before anything else starts); none: the gateway binds it.
    #[arg(skip)]
    pub bound: Bound,
}

/// A listening socket handed to the gateway once.
#[derive(Clone, Default)]
pub struct Bound(std::sync::Arc<std::sync::Mutex<Option<std::net::TcpListener>>>);

impl Bound {
    /// Binds `addr` now.
    pub fn bind(addr: &str) -> std::io::Result<Bound> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Bound(std::sync::Arc::new(std::sync::Mutex::new(Some(listener)))))
    }

    /// The listener, the first time it is asked for.
    pub fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().ok()?.take()
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bound")
    }
}

impl HttpConfig {
    /// Test mode (`X-User-ID`, which nothing but a test should trust) on `addr`, loopback only,
    /// nothing else set: what test harnesses and benchmarks run the gateway with.
    pub fn test_mode(addr: &str) -> Self {
        HttpConfig {
            http_addr: addr.to_string(),
            auth_mode: AuthMode::Test,
            api_token: None,
            api_token_file: None,
            public_hosts: vec![],
            user: crate::auth::LOCAL_USER.into(),
            cors_origins: vec![],
            github_webhook_secret: None,
            sse_heartbeat_secs: 30,
            proxy: Default::default(),
            bound: Bound::default(),
        }
    }
}

impl Config {
    pub fn health(&self) -> Health {
        self.common.health.clone()
    }
}

impl HttpConfig {
    /// Refuses settings that would be unsafe or silently ignored: local mode (no login) or test
    /// mode (a client-chosen identity) on an address other than loopback, a token without token mode, token mode without a token.
    pub fn checked(mut self) -> Result<Self, String> {
        if let Some(file) = &self.api_token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the API token from {}: {e}", file.display()))?;
            self.api_token = Some(Secret::new(token.trim()));
        }
        let addr: std::net::SocketAddr = self
            .http_addr
            .parse()
            .map_err(|e| format!("HTTP_ADDR {} is not an address: {e}", self.http_addr))?;
        match self.auth_mode {
            AuthMode::Local if !addr.ip().is_loopback() => Err(format!(
                "local mode has no login, so it serves loopback only; {} is not. Use --auth-mode token \
                 (with MAINLOOP_API_TOKEN) to listen there",
                self.http_addr
            )),
            AuthMode::Test if !addr.ip().is_loopback() => Err(format!(
                "test mode believes whoever a request says it is (X-User-ID), so it serves loopback only; \
                 {} is not. Use --auth-mode token to listen there",
                self.http_addr
            )),
            AuthMode::Proxy if self.proxy.auth_trusted_proxies.is_empty() => Err(
                "--auth-mode proxy needs AUTH_TRUSTED_PROXIES: the addresses the user header is believed from".into(),
            ),
            AuthMode::Local | AuthMode::Test | AuthMode::Proxy if self.api_token.is_some() => Err(
                "an API token was given, but the auth mode is not `token`; set --auth-mode token (or AUTH_MODE=token)".into(),
            ),
            AuthMode::Token if self.api_token.is_none() => {
                Err("--auth-mode token needs MAINLOOP_API_TOKEN or --api-token-file".into())
            }
            _ => Ok(self),
        }
    }

    /// The host names the gateway serves besides loopback: its own address and the public ones.
    pub fn served_hosts(&self) -> Vec<String> {
        let own = self.http_addr.rsplit_once(':').map(|(host, _)| host.to_string());
        own.into_iter().chain(self.public_hosts.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::HttpConfig;
    use crate::auth::AuthMode;
    use mainloop_runtime::Secret;

    fn config(addr: &str, mode: AuthMode, token: Option<&str>) -> HttpConfig {
        HttpConfig {
            http_addr: addr.into(),
            auth_mode: mode,
            api_token: token.map(Secret::new),
            api_token_file: None,
            public_hosts: vec![],
            user: "u".into(),
            cors_origins: vec![],
            github_webhook_secret: None,
            sse_heartbeat_secs: 30,
            proxy: Default::default(),
            bound: super::Bound::default(),
        }
    }

    #[test]
    fn unsafe_or_ignored_settings_are_refused() {
        assert!(config("127.0.0.1:8080", AuthMode::Local, None).checked().is_ok());
        let open = config("0.0.0.0:8080", AuthMode::Local, None).checked();
        assert!(open.is_err_and(|e| e.contains("loopback only")));
        let test_mode_outside = config("192.168.1.5:8080", AuthMode::Test, None).checked();
        assert!(test_mode_outside.is_err_and(|e| e.contains("X-User-ID")));
        assert!(config("127.0.0.1:8080", AuthMode::Test, None).checked().is_ok());
        let ignored = config("127.0.0.1:8080", AuthMode::Local, Some("t")).checked();
        assert!(ignored.is_err_and(|e| e.contains("--auth-mode token")));
        assert!(config("0.0.0.0:8080", AuthMode::Token, None).checked().is_err());
        let proxied = HttpConfig {
            proxy: crate::auth::proxy::ProxySettings {
                auth_proxy_header: "X-Forwarded-User".into(),
                auth_trusted_proxies: vec![],
            },
            ..config("0.0.0.0:8080", AuthMode::Proxy, None)
        };
        assert!(
            proxied.clone().checked().is_err(),
            "proxy mode without trusted proxies"
        );
        let trusted = HttpConfig {
            proxy: crate::auth::proxy::ProxySettings {
                auth_trusted_proxies: crate::auth::proxy::parse_net("10.0.0.5").into_iter().collect(),
                ..proxied.proxy.clone()
            },
            ..proxied
        };
        assert!(trusted.checked().is_ok());
        assert!(
            config("0.0.0.0:8080", AuthMode::Token, Some("t"))
                .checked()
                .is_ok()
        );
    }
}
