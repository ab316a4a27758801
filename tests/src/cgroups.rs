//! Cgroups as the tests see them: every hierarchy's root, and removing a tree a test made.

use std::path::{Path, PathBuf};

/// The root of every cgroup hierarchy of this host (the unified one first, if mounted).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = rrockerd::cgroup::mounts::CgroupMounts::read().expect("cgroup mounts");
    mounts.unified.into_iter().chain(mounts.v1.into_iter().map(|(_, path)| path)).collect()
}

/// Removes the cgroup `top` (one the test made) and everything below it, deepest first,
/// each once the kernel lets go of it.
pub fn remove_cgroup_tree(top: &Path) {
    let mut dirs = vec![top.to_owned()];
    let mut index = 0;
    while let Some(dir) = dirs.get(index).cloned() {
        let children = std::fs::read_dir(&dir).into_iter().flatten();
        dirs.extend(children.filter_map(|e| Some(e.ok()?.path()).filter(|p| p.is_dir())));
        index += 1;
    }
    for dir in dirs.iter().rev() {
        let _ = rrockerd::cgroup::files::remove(dir);
    }
}
