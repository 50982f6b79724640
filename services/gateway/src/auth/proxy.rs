//! Trusted-proxy authentication, for teams behind an identity-aware proxy (oauth2-proxy, Pomerium,
//! Cloudflare Access, IAP): the proxy signs the person in and names them in a header; the gateway
//! believes that header only on connections from the proxy's own addresses, so nobody who can
//! reach the gateway directly can name themselves someone else.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Which header names the person, and which peers may set it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProxySettings {
    /// `--auth-mode proxy`: the header the proxy names the signed-in person in.
    #[arg(long, env = "AUTH_PROXY_HEADER", default_value = "X-Forwarded-User")]
    pub auth_proxy_header: String,
    /// `--auth-mode proxy`: the proxy's addresses or networks (comma-separated, e.g.
    /// `10.0.0.5,10.1.0.0/16`); the header is refused from anywhere else.
    #[arg(long, env = "AUTH_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub auth_trusted_proxies: Vec<IpNet>,
}

/// An address (`10.0.0.5`) or a network (`10.0.0.0/8`).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text} is neither an address nor a network"))
}

impl ProxySettings {
    /// Whether a connection from `peer` may name the person.
    pub fn trusts(&self, peer: Option<SocketAddr>) -> bool {
        let Some(peer) = peer else {
            return false;
        };
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.auth_trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(nets: &[&str]) -> ProxySettings {
        ProxySettings {
            auth_proxy_header: "X-Forwarded-User".into(),
            auth_trusted_proxies: nets.iter().filter_map(|n| parse_net(n).ok()).collect(),
        }
    }

    fn peer(addr: &str) -> Option<SocketAddr> {
        addr.parse().ok()
    }

    #[test]
    fn only_the_proxys_addresses_are_trusted() {
        let proxies = settings(&["10.0.0.5", "10.1.0.0/16"]);
        assert!(proxies.trusts(peer("10.0.0.5:40000")));
        assert!(proxies.trusts(peer("10.1.200.3:1")));
        assert!(proxies.trusts(peer("[::ffff:10.0.0.5]:40000")));
        assert!(!proxies.trusts(peer("10.0.0.6:40000")));
        assert!(!proxies.trusts(peer("127.0.0.1:40000")));
        assert!(!proxies.trusts(None));
        assert!(!settings(&[]).trusts(peer("10.0.0.5:1")));
        assert!(parse_net("not-an-ip").is_err());
    }

    #[test]
    fn a_persons_name_becomes_an_id_no_other_name_shares() {
        use crate::auth::person_id;
        assert_eq!(
            person_id("alice@example.com").as_deref(),
            Ok("alice_40example_2ecom")
        );
        assert_eq!(person_id("local-dev-user").as_deref(), Ok("local-dev-user"));
        assert_ne!(person_id("a.b@x"), person_id("a_b@x"));
        assert_eq!(person_id("a_b").as_deref(), Ok("a_5fb"));
        assert!(person_id("").is_err());
        assert!(person_id(&"x".repeat(200)).is_err());
    }
}
