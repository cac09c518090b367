//! Who holds a TCP port: a listening socket in `/proc/net/tcp{,6}`, then the process whose open
//! files include that socket. Processes of other users cannot be looked into without privilege;
//! then only the fact that something listens is known.

/// `" by etcd (pid 812)"`, `" by a process this user cannot see"`, or nothing.
pub fn describe(port: u16) -> String {
    let Some(inode) = listening_inode(port) else {
        return String::new();
    };
    match owner(inode) {
        Some((pid, name)) => format!(" by {name} (pid {pid})"),
        None => " by a process this user cannot see (look with: ss -ltnp)".into(),
    }
}

fn listening_inode(port: u16) -> Option<u64> {
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
            let p = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if p == Some(port) && *state == "0A" {
                return inode.parse().ok();
            }
        }
    }
    None
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
    #[test]
    fn names_this_process_as_the_holder_of_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let said = super::describe(port);
        assert!(
            said.contains(&format!("pid {}", std::process::id())),
            "{said}"
        );
        drop(l);
        assert_eq!(super::describe(port), "");
    }
}
