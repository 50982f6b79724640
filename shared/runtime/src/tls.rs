//! TLS for outgoing HTTPS (Anthropic, GitHub): rustls with ring, the provider async-nats already
//! builds, installed once per process before any client is made.

/// Installs ring as the process-wide rustls provider; a second call is a no-op.
pub fn install() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
