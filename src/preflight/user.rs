//! Whether etcd's user can read a file. As root the agent asks the kernel itself: a child takes
//! that user's ids and groups and opens the file (so directory permissions and ACLs count, as
//! they will for etcd). As anyone else it can only reason from the file's owner and mode.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A user etcd runs as, from the password database.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl User {
    pub fn lookup(name: &str) -> Result<User, String> {
        let c_name = CString::new(name).map_err(|_| format!("user {name:?} is not a user name"))?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to live storage of the size given.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(format!("user {name:?} does not exist on this machine"));
        }
        let mut groups = vec![0 as libc::gid_t; 256];
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `count` entries; getgrouplist says how many it filled.
        let rc = unsafe {
            libc::getgrouplist(c_name.as_ptr(), pwd.pw_gid, groups.as_mut_ptr(), &mut count)
        };
        groups.truncate(if rc < 0 { 0 } else { count as usize });
        Ok(User {
            name: name.to_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            groups,
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `Err`: why this user cannot read `path`.
    pub fn can_read(&self, path: &Path) -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            self.open_as(path)
        } else {
            self.by_mode(path)
        }
    }

    fn open_as(&self, path: &Path) -> Result<(), String> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| "the path has a NUL byte".to_string())?;
        // SAFETY: between fork and _exit the child makes only system calls (no allocation, no
        // locks), which is what the forked child of a threaded process may do; its exit status
        // carries the open's errno back (0: opened).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!(
                "cannot fork to check as {}: {}",
                self.name,
                std::io::Error::last_os_error()
            ));
        }
        if pid == 0 {
            unsafe {
                let errno = || *libc::__errno_location();
                if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                    || libc::setgid(self.gid) != 0
                    || libc::setuid(self.uid) != 0
                {
                    libc::_exit(255);
                }
                let fd = libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                libc::_exit(if fd < 0 { errno().clamp(1, 254) } else { 0 });
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid || !libc::WIFEXITED(status) {
            return Err(format!("the check as {} did not finish", self.name));
        }
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            255 => Err(format!("cannot take the ids of {}", self.name)),
            errno => Err(std::io::Error::from_raw_os_error(errno).to_string()),
        }
    }

    fn by_mode(&self, path: &Path) -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let mode = meta.mode();
        let readable = if self.uid == 0 {
            true
        } else if meta.uid() == self.uid {
            mode & 0o400 != 0
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode & 0o040 != 0
        } else {
            mode & 0o004 != 0
        };
        if readable {
            Ok(())
        } else {
            Err(format!(
                "mode {:04o}, owner uid {} gid {}",
                mode & 0o7777,
                meta.uid(),
                meta.gid()
            ))
        }
    }
}
