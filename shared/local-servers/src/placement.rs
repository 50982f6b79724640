//! Where a server run as another user keeps its files. As root, Postgres runs as the `postgres`
//! user, which cannot reach a directory under a 0700 home (`/root/project/.mainloop`, the usual
//! place on a fresh VM). Such data goes to `/var/lib/mainloop/<digest of the path>/` instead:
//! the same path every time for the same data dir, so restarts find it, and a link at the usual
//! place says where it went. One data dir's servers share one such place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::child::RunAs;

/// Where root keeps server data its servers could not reach inside the project.
pub const OUTSIDE_ROOT: &str = "/var/lib/mainloop";

/// The directory Postgres should use for `wanted` (which it may not be able to reach), made and
/// owned by the user Postgres runs as. Not root: `wanted` itself.
pub fn postgres_dir(wanted: &Path) -> Result<PathBuf, Error> {
    match RunAs::postgres_if_root()? {
        None => Ok(wanted.to_path_buf()),
        Some(user) => place(wanted, user, true),
    }
}

/// A directory for `wanted` that the user `uid`/`gid` can reach (it stays root's; what the user
/// needs below it is given to it by the caller): `wanted` itself when every directory on the way
/// lets that user through, else a place under [`OUTSIDE_ROOT`].
pub fn reachable_dir(wanted: &Path, uid: u32, gid: u32) -> Result<PathBuf, Error> {
    place(wanted, RunAs { uid, gid }, false)
}

/// The uid and gid of the user `name` (from /etc/passwd).
pub fn user_ids(name: &str) -> Result<Option<(u32, u32)>, Error> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(Error::Io)?;
    Ok(passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [user, _, uid, gid, ..] if *user == name => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    }))
}

fn place(wanted: &Path, user: RunAs, give_to_user: bool) -> Result<PathBuf, Error> {
    let link_target = std::fs::read_link(wanted).ok();
    if link_target.is_none() && can_reach(wanted, user) {
        return Ok(wanted.to_path_buf());
    }
    let outside = link_target.unwrap_or_else(|| outside_dir(wanted));
    std::fs::create_dir_all(&outside).map_err(Error::Io)?;
    if give_to_user {
        user.chown(&outside)?;
    }
    if !wanted.exists() {
        if let Some(parent) = wanted.parent() {
            std::fs::create_dir_all(parent).map_err(Error::Io)?;
        }
        // Only a pointer for people; a failure to make it changes nothing.
        let _ = std::os::unix::fs::symlink(&outside, wanted);
    }
    Ok(outside)
}

fn outside_dir(wanted: &Path) -> PathBuf {
    let name = wanted
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let owner = wanted.parent().unwrap_or(wanted);
    Path::new(OUTSIDE_ROOT)
        .join(format!("{:016x}", fnv1a(owner.as_os_str().as_encoded_bytes())))
        .join(name)
}

/// Stable across runs and builds (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `user` can walk down to `path`: every existing directory on the way must let it
/// search (x for its owner, its group or others). The missing rest will be made by root for it.
fn can_reach(path: &Path, user: RunAs) -> bool {
    path.ancestors().skip(1).all(|dir| match std::fs::metadata(dir) {
        Err(_) => true,
        Ok(meta) => {
            let mode = meta.mode();
            if meta.uid() == user.uid {
                mode & 0o100 != 0
            } else if meta.gid() == user.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_home_is_not_reachable_by_another_user() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap_or_else(|e| panic!("{e}"));
        let wanted = home.join("project/.mainloop/postgres");
        let other = RunAs { uid: 4242, gid: 4242 };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!can_reach(&wanted, other), "0700 stops others");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o711))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(can_reach(&wanted, other), "o+x lets others through");
    }

    #[test]
    fn the_outside_place_is_the_same_for_the_same_path() {
        let a = outside_dir(Path::new("/root/p/.mainloop/postgres"));
        assert_eq!(a, outside_dir(Path::new("/root/p/.mainloop/postgres")));
        assert_ne!(a, outside_dir(Path::new("/root/q/.mainloop/postgres")));
        let run = outside_dir(Path::new("/root/p/.mainloop/run"));
        assert_eq!(run.parent(), a.parent(), "one place per data dir");
        assert!(a.starts_with(OUTSIDE_ROOT) && a.ends_with("postgres"));
    }
}
