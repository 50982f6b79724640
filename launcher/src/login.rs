//! Token mode without set-up: `mainloop up --auth-mode token` with no token given makes one at
//! first start (`<data dir>/api-token`, readable by its owner only) and keeps it, and once
//! mainloop runs it prints the login URL to open on a phone or another computer:
//! `http://<this machine>:<port>/login#token=…` (see the gateway's `routes/login.rs`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use mainloop_gateway::{AuthMode, HttpConfig};

/// Makes (or finds) the token when token mode has none.
pub fn prepare(http: &mut HttpConfig, data_dir: &Path) -> anyhow::Result<()> {
    if http.auth_mode != AuthMode::Token || http.api_token.is_some() || http.api_token_file.is_some() {
        return Ok(());
    }
    let file = data_dir.join("api-token");
    if !file.exists() {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let token = mainloop_gateway::session::new_secret().context("no randomness for a token")?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{token}"))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    let mode = std::fs::metadata(&file)?.permissions().mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} is readable by others (mode {:o}); make it private with chmod 600",
        file.display(),
        mode & 0o777
    );
    http.api_token_file = Some(file);
    Ok(())
}

/// The login URL, in token mode.
pub fn url(http: &HttpConfig) -> Option<String> {
    if http.auth_mode != AuthMode::Token {
        return None;
    }
    let token = match (&http.api_token, &http.api_token_file) {
        (Some(token), _) => token.expose().to_string(),
        (None, Some(file)) => std::fs::read_to_string(file).ok()?.trim().to_string(),
        (None, None) => return None,
    };
    let (host, port) = http.http_addr.rsplit_once(':')?;
    let host = if host == "0.0.0.0" || host == "[::]" {
        reachable_ip().unwrap_or_else(|| host.to_string())
    } else {
        host.to_string()
    };
    Some(format!("http://{host}:{port}/login#token={token}"))
}

/// This machine's address on the network it would reach others through (no packet is sent).
fn reachable_ip() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_mode(addr: &str) -> HttpConfig {
        HttpConfig {
            auth_mode: AuthMode::Token,
            ..HttpConfig::test_mode(addr)
        }
    }

    #[test]
    fn a_token_is_made_once_kept_private_and_given_as_a_login_url() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut http = token_mode("127.0.0.1:8080");
        prepare(&mut http, dir.path())?;
        let file = dir.path().join("api-token");
        assert_eq!(http.api_token_file.as_deref(), Some(file.as_path()));
        assert_eq!(std::fs::metadata(&file)?.permissions().mode() & 0o777, 0o600);
        let token = std::fs::read_to_string(&file)?.trim().to_string();
        assert_eq!(token.len(), 43);
        assert_eq!(
            url(&http),
            Some(format!("http://127.0.0.1:8080/login#token={token}"))
        );

        let mut again = token_mode("127.0.0.1:8080");
        prepare(&mut again, dir.path())?;
        assert_eq!(
            std::fs::read_to_string(&file)?.trim(),
            token,
            "kept across starts"
        );

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        let mut open = token_mode("127.0.0.1:8080");
        assert!(prepare(&mut open, dir.path()).is_err_and(|e| e.to_string().contains("chmod 600")));

        let mut local = HttpConfig::test_mode("127.0.0.1:8080");
        prepare(&mut local, dir.path())?;
        assert_eq!(
            (
                local.api_token_file,
                url(&HttpConfig::test_mode("127.0.0.1:8080"))
            ),
            (None, None)
        );
        Ok(())
    }
}
