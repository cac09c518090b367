//! Validated values that end up in etcd's environment file: member names, hosts and URLs.
//!
//! Everything discovery returns passes through these types before the decision core or the env
//! file sees it, so a hostile name from a cloud API is refused here, once, with a clear message.

use std::fmt;
use std::net::IpAddr;

/// The longest member name accepted: the length of a DNS name, which is what names usually are.
pub const MAX_NAME_LEN: usize = 253;

/// An etcd member name, restricted to `[A-Za-z0-9._-]` and starting with a letter or digit.
///
/// The restriction is what lets the env file be written without quoting: the name cannot contain
/// `=` or `,` (which would split `ETCD_INITIAL_CLUSTER`), whitespace, quotes, `$`, backticks or
/// newlines (which would mean something to a shell or to systemd).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct MemberName(String);

impl MemberName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("member name is empty".into());
        }
        if raw.chars().count() > MAX_NAME_LEN {
            return Err(format!(
                "member name {} is {} characters long; at most {MAX_NAME_LEN} are allowed",
                excerpt(raw),
                raw.chars().count()
            ));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "member name {} contains {}; only letters, digits, '.', '_' and '-' are allowed",
                excerpt(raw),
                describe_char(bad)
            ));
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "member name {} must start with a letter or digit",
                excerpt(raw)
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where peers and clients reach a member: an IP address or a DNS host name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl Host {
    /// Accepts canonical IPv4/IPv6 addresses and DNS host names. IPv6 zone ids (`fe80::1%eth0`)
    /// are refused: a link-local address means nothing on another machine.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(raw);
        if trimmed.contains('%') {
            return Err(format!(
                "address {} has an IPv6 zone id, which other machines cannot use",
                excerpt(raw)
            ));
        }
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            if ip.to_string() != trimmed {
                return Err(format!(
                    "address {} is not in canonical form (expected {ip})",
                    excerpt(raw)
                ));
            }
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(format!("address {ip} cannot be a member's address"));
            }
            return Ok(Host::Ip(ip));
        }
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if is_dns_name(name) {
            // A string of digits and dots is an IPv4 address that failed to parse (e.g. "10.0.0.256"
            // or "010.0.0.1"); do not let it pass as a host name.
            if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(format!(
                    "address {} is not a valid IPv4 address",
                    excerpt(raw)
                ));
            }
            return Ok(Host::Dns(name.to_ascii_lowercase()));
        }
        Err(format!(
            "address {} is neither an IP address nor a DNS host name",
            excerpt(raw)
        ))
    }

    /// The host as it appears in a URL: IPv6 addresses in brackets.
    pub fn url_host(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Dns(name) => name.clone(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// `scheme://host:port`, the only URL shape etcd's member flags take.
pub fn url(scheme: Scheme, host: &Host, port: u16) -> String {
    format!("{scheme}://{}:{port}", host.url_host())
}

/// The host of a `scheme://host:port[/path]` URL, as written (an IPv6 address keeps its
/// brackets); `None` without a scheme or a port.
pub fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit_once(':').map(|(host, _)| host)
}

/// A machine that discovery found: a candidate etcd member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The platform's stable id (droplet id, server id, instance id; the name for static lists).
    pub id: String,
    pub name: MemberName,
    pub host: Host,
    /// Creation time as the platform reports it (RFC 3339), when known; shown to operators.
    pub created: Option<String>,
}

/// A short, printable excerpt of untrusted input for error messages: control characters escaped,
/// long values cut, so an error line stays one line.
/// One member as the static list and the `exec` provider write it: `name=address`.
pub fn parse_entry(entry: &str) -> Result<(MemberName, Host), String> {
    let (name, addr) = entry
        .split_once('=')
        .ok_or_else(|| format!("{} is not \"name=address\"", excerpt(entry)))?;
    let within = |e: String| format!("{}: {e}", excerpt(entry));
    Ok((
        MemberName::parse(name).map_err(within)?,
        Host::parse(addr).map_err(within)?,
    ))
}

pub fn excerpt(raw: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = raw.chars().take(MAX).flat_map(char::escape_debug).collect();
    if raw.chars().count() > MAX {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn describe_char(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\0' => "a NUL byte".into(),
        ' ' => "a space".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c if !c.is_ascii() => format!("the non-ASCII character '{c}' (U+{:04X})", c as u32),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_url() {
        assert_eq!(host_of("http://10.0.0.1:2380"), Some("10.0.0.1"));
        assert_eq!(
            host_of("https://[fd00::3]:2379/v3/kv/put"),
            Some("[fd00::3]")
        );
        assert_eq!(host_of("http://localhost"), None);
        assert_eq!(host_of("10.0.0.1:2380"), None);
    }

    #[test]
    fn names_accept_the_usual_shapes() {
        for ok in ["etcd-0", "etcd_1", "node.example.com", "i-0abc123", "0"] {
            assert_eq!(MemberName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn names_refuse_anything_that_could_break_the_env_file() {
        let long = "a".repeat(300);
        let cases: &[(&str, &str)] = &[
            ("etcd\n0", "a newline"),
            ("etcd'0", "'''"),
            ("etcd\"0", "'\"'"),
            ("$(reboot)", "'$'"),
            ("a`id`", "'`'"),
            ("a=b", "'='"),
            ("a,b", "','"),
            ("a b", "a space"),
            ("", "empty"),
            (&long, "300 characters"),
            ("a\0b", "NUL"),
            ("еtcd", "non-ASCII"), // Cyrillic 'е'
            ("-etcd", "must start"),
        ];
        for (raw, why) in cases {
            let err = MemberName::parse(raw).unwrap_err();
            assert!(err.contains(why), "{raw:?}: {err}");
            assert!(!err.contains('\n'), "error must be one line: {err:?}");
        }
    }

    #[test]
    fn hosts_parse_and_bracket_ipv6() {
        let v6 = Host::parse("fd00::1").unwrap();
        assert_eq!(url(Scheme::Https, &v6, 2380), "https://[fd00::1]:2380");
        assert_eq!(Host::parse("[fd00::1]").unwrap(), v6);
        let v4 = Host::parse("10.0.0.1").unwrap();
        assert_eq!(url(Scheme::Http, &v4, 2379), "http://10.0.0.1:2379");
        assert_eq!(
            Host::parse("Infra0.Example.com.").unwrap(),
            Host::Dns("infra0.example.com".into())
        );
    }

    #[test]
    fn hosts_refuse_zone_ids_non_canonical_and_junk() {
        for bad in [
            "fe80::1%eth0",
            "FD00::1",
            "fd00:0::1",
            "10.0.0.256",
            "010.0.0.1",
            "0.0.0.0",
            "::",
            "a b",
            "host;reboot",
            "",
            "-bad.example",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn excerpts_stay_on_one_line() {
        assert_eq!(excerpt("a\nb"), "\"a\\nb\"");
        assert!(excerpt(&"x".repeat(10_000)).chars().count() < 50);
    }
}
