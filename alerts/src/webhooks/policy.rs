//! Where webhooks may be delivered. A webhook URL is written by whoever may write fences or the
//! configuration, and the server POSTs to it from inside the operator's network: without a
//! policy, a fence could aim the server at a cloud metadata service, a database port or any
//! internal host (server-side request forgery). So by default only public addresses are
//! reached: loopback, private, link-local, shared (CGNAT), multicast and unspecified addresses
//! are refused, unless the operator allows a network (`webhooks.allowed_networks`, e.g.
//! `10.1.0.0/16` for an internal receiver).
//!
//! URLs are checked when they are written ([`Policy::check_url`]: scheme, host, literal
//! addresses) and again at every delivery, on the addresses the name resolves to then
//! ([`Policy::resolve`]): a name that resolved to a public address when the fence was written
//! and to an internal one later (DNS rebinding) is refused at connection time. Redirects are
//! never followed and proxies from the environment are not used, so the connection goes to the
//! address checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Error;

/// An allowed network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (
                address.trim().parse::<IpAddr>().ok()?,
                Some(prefix.trim().parse::<u8>().ok()?),
            ),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Self { address, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => (u128::from(net.to_bits()), u128::from(ip.to_bits()), 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => (net.to_bits(), ip.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }
}

/// The delivery policy: which addresses a webhook may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Vec<Network>,
}

impl Policy {
    /// A policy allowing, beyond public addresses, the `networks` given (`a.b.c.d/n`, `x::/n`,
    /// or a single address).
    pub fn new(networks: &[String]) -> Result<Self, Error> {
        let allowed = networks
            .iter()
            .map(|text| {
                Network::parse(text).ok_or_else(|| Error::WebhookUrl {
                    url: text.clone(),
                    reason: "in webhooks.allowed_networks is not an address or address/prefix".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Whether a webhook may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip) || self.allowed.iter().any(|network| network.contains(ip))
    }

    /// Checks a webhook URL as written: `http(s)://host[:port]/path`, no credentials in it, and
    /// a literal address the policy allows.
    pub fn check_url(&self, url: &str) -> Result<url::Url, Error> {
        let refused = |reason: String| Error::WebhookUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| refused(format!("is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refused("must be https://host/path or http://host/path".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused(
                "carries credentials; receivers verify the signature instead".into(),
            ));
        }
        match parsed.host() {
            None => Err(refused("must be https://host/path or http://host/path".into())),
            Some(url::Host::Ipv4(ip)) if !self.allows(IpAddr::V4(ip)) => Err(refused(not_allowed(ip.into()))),
            Some(url::Host::Ipv6(ip)) if !self.allows(IpAddr::V6(ip)) => Err(refused(not_allowed(ip.into()))),
            Some(_) => Ok(parsed),
        }
    }

    /// The addresses of `host` (a name, resolved now by the system resolver, or a literal
    /// address) the policy allows, with `port`; an error when none is left, so the check holds
    /// at connection time.
    pub async fn resolve(&self, host: &url::Host<&str>, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let found: Vec<SocketAddr> = match host {
            url::Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
            url::Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
            url::Host::Domain(name) => tokio::net::lookup_host((*name, port))
                .await
                .map_err(|error| Error::WebhookUrl {
                    url: (*name).to_owned(),
                    reason: format!("cannot be resolved: {error}"),
                })?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| self.allows(a.ip())).collect();
        if allowed.is_empty() {
            return Err(Error::WebhookUrl {
                url: host.to_string(),
                reason: format!(
                    "resolves to {:?}, none of which webhooks may reach (loopback, private or link-local); allow the network in webhooks.allowed_networks if it is meant",
                    found.iter().map(SocketAddr::ip).collect::<Vec<_>>()
                ),
            });
        }
        Ok(allowed)
    }
}

fn not_allowed(ip: IpAddr) -> String {
    format!(
        "reaches {ip}, a loopback, private or link-local address; allow its network in webhooks.allowed_networks if it is meant"
    )
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A globally routable unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (b & 0xC0) == 64)
        // Reserved for future use, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local addresses, fc00::/7.
        || (first & 0xFE00) == 0xFC00
        // Link-local unicast, fe80::/10.
        || (first & 0xFFC0) == 0xFE80
        // IPv4-compatible and other embeddings of IPv4 (::/96) and NAT64 (64:ff9b::/96) hide
        // an IPv4 address that was not checked.
        || ip.segments()[..6] == [0; 6]
        || ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_their_network_is_allowed() {
        let strict = Policy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:5432/",
            "http://[::1]:22/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://10.0.0.7/hook",
            "http://[::ffff:192.168.1.1]/",
            "http://[fd00::1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
        ] {
            let error = strict.check_url(url).expect_err(url).to_string();
            assert!(error.contains("allowed_networks"), "{url}: {error}");
        }
        assert!(strict.check_url("http://93.184.216.34/hook").is_ok());
        assert!(
            strict.check_url("http://hooks.example.org/a").is_ok(),
            "names are checked when resolved"
        );
        let local = Policy::new(&["127.0.0.1".into(), "10.1.0.0/16".into()]).expect("policy");
        assert!(local.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(local.check_url("http://10.1.200.3/hook").is_ok());
        assert!(local.check_url("http://10.2.0.1/hook").is_err());
        assert!(Policy::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn credentials_schemes_and_garbage_are_refused() {
        let policy = Policy::default();
        for (url, needle) in [
            ("http://user:pw@example.org/hook", "credentials"),
            ("ftp://example.org/", "https://host/path"),
            ("not a url", "not a URL"),
        ] {
            let error = policy.check_url(url).expect_err(url).to_string();
            assert!(error.contains(needle), "{url}: {error}");
        }
        assert!(policy.check_url("https://example.org/hook").is_ok());
    }

    #[tokio::test]
    async fn resolving_drops_refused_addresses() {
        let localhost = url::Host::Domain("localhost");
        let resolved = Policy::default().resolve(&localhost, 80).await;
        assert!(resolved.is_err(), "localhost resolves to loopback only");
        let open = Policy::new(&["127.0.0.0/8".into(), "::1".into()]).expect("policy");
        let addrs = open.resolve(&localhost, 80).await.expect("allowed");
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        let literal = url::Host::Ipv4(Ipv4Addr::new(10, 0, 0, 7));
        assert!(Policy::default().resolve(&literal, 80).await.is_err());
    }
}
