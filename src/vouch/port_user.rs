//! Who holds a TCP port: a listening socket in `/proc/net/tcp{,6}`, then the process whose open
//! files include that socket. Processes of other users cannot be looked into without privilege;
//! then only the fact that something listens is known.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `" by etcd (pid 812)"`, `" by a process this user cannot see"`, or nothing. A listener on
/// that address and port, or on the wildcard address and that port, holds it.
pub fn describe(addr: SocketAddr) -> String {
    let Some(inode) = listening_inode(addr) else {
        return String::new();
    };
    match owner(inode) {
        Some((pid, name)) => format!(" by {name} (pid {pid})"),
        None => " by a process this user cannot see (look with: ss -ltnp)".into(),
    }
}

fn listening_inode(addr: SocketAddr) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode(9)
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let Some((ip, port)) = parse_local(local) else {
                continue;
            };
            let holds = port == addr.port() && (ip == addr.ip() || ip.is_unspecified());
            if holds && *state == "0A" {
                return inode.parse().ok();
            }
        }
    }
    None
}

/// `0100007F:0950` (IPv4) or 32 hex digits (IPv6): the address as the kernel stores it, printed
/// 32 bits at a time in this machine's byte order (little-endian here), then the port.
fn parse_local(field: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in ip.as_bytes().chunks(8) {
        let w = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((ip, port))
}

fn owner(inode: u64) -> Option<(u32, String)> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|n| n.trim().to_owned())
                    .unwrap_or_else(|_| "a process".into());
                return Some((pid, name));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process_as_the_holder_of_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let said = describe(addr);
        assert!(
            said.contains(&format!("pid {}", std::process::id())),
            "{said}"
        );
        // Another address with the same port is not held by it.
        assert_eq!(
            describe(SocketAddr::new([127, 0, 0, 2].into(), addr.port())),
            ""
        );
        drop(l);
        assert_eq!(describe(addr), "");
    }

    #[test]
    fn reads_the_kernels_address_format() {
        assert_eq!(
            parse_local("0100007F:0950"),
            Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 2384))
        );
        assert_eq!(
            parse_local("00000000000000000000000001000000:0050"),
            Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 80))
        );
        assert_eq!(parse_local("zz:1"), None);
    }
}
