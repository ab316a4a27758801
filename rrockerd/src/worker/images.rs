//! The images tasks' roots are overlays of, as tasks must see them (owned by their mapped
//! root): the daemon's own (`--image`, or the default built on first run), made ready at
//! start-up, and the named images of the images directory (`rrockerd image import`), made
//! ready on first use. Ready means an idmapped read-only mount in the daemon's private mount
//! namespace, or else (no private namespace, or no idmapped mounts there) a copy with shifted
//! owners; an unprivileged daemon uses an image as it is.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rrocker_uring::IdMap;

use crate::Mounts;
use crate::error::DaemonError;
use crate::worker::{idmap, image, import};

/// Every image this daemon has made ready, by name ("" for its own).
#[derive(Debug)]
pub struct Images {
    images_dir: PathBuf,
    /// Where idmapped mounts are attached: `<state>/image` for the daemon's own image,
    /// `<state>/images/<name>` for named ones.
    state_dir: PathBuf,
    id_map: IdMap,
    mounts: Mounts,
    ready: Mutex<HashMap<String, PathBuf>>,
}

impl Images {
    /// Makes the daemon's own image ready: `image`, or the default one (built in
    /// `images_dir` if it is not there yet).
    pub fn new(
        image: Option<&Path>,
        images_dir: &Path,
        state_dir: &Path,
        id_map: IdMap,
        mounts: Mounts,
    ) -> Result<Self, DaemonError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(images_dir).map_err(
            |source| DaemonError::Io { action: "create", path: images_dir.to_owned(), source },
        )?;
        let source = match image {
            Some(image) => image.to_owned(),
            None => image::ensure_default(&images_dir.join(image::DEFAULT_IMAGE))?,
        };
        let images = Self {
            images_dir: images_dir.to_owned(),
            state_dir: state_dir.to_owned(),
            id_map,
            mounts,
            ready: Mutex::default(),
        };
        let own = images.make_ready(&source, &state_dir.join("image"))?;
        images.lock().insert(String::new(), own);
        Ok(images)
    }

    /// Only `image`, used as it is (already owned by the tasks' root), with no named image.
    pub fn as_is(image: &Path) -> Self {
        let ready = HashMap::from([(String::new(), image.to_owned())]);
        Self {
            images_dir: PathBuf::from("/nonexistent"),
            state_dir: PathBuf::from("/nonexistent"),
            id_map: IdMap { first_uid: 0, first_gid: 0, count: 0 },
            mounts: Mounts::Host,
            ready: Mutex::new(ready),
        }
    }

    /// The ready path of the image `name` (`""`: the daemon's own), making it ready on first
    /// use. A name that is not an image of the images directory is refused in one line.
    pub fn get(&self, name: &str) -> Result<PathBuf, DaemonError> {
        if let Some(ready) = self.lock().get(name) {
            return Ok(ready.clone());
        }
        import::check_name(name)?;
        let source = self.images_dir.join(name);
        if !source.is_dir() {
            return Err(DaemonError::InvalidArgument(format!(
                "Image '{name}' doesn't exist on this host; import one with `rrockerd image import FILE.tar --name {name}`"
            )));
        }
        // Held while the image is made ready, so that two first uses make it once.
        let mut ready = self.lock();
        if let Some(path) = ready.get(name) {
            return Ok(path.clone());
        }
        let images = self.state_dir.join("images");
        dir_with_mode(&images, 0o755).map_err(|source| DaemonError::Io {
            action: "create",
            path: images.clone(),
            source,
        })?;
        let path = self.make_ready(&source, &images.join(name))?;
        tracing::info!(image = name, "made a named image ready");
        ready.insert(name.to_owned(), path.clone());
        Ok(path)
    }

    /// Unmounts every idmapped image and removes the directories they were attached at.
    pub fn release(&self) {
        let mut targets = vec![self.state_dir.join("image")];
        let named = self.state_dir.join("images");
        targets.extend(
            self.lock().keys().filter(|name| !name.is_empty()).map(|name| named.join(name)),
        );
        for target in targets.iter().filter(|target| target.exists()) {
            let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
            let _ = std::fs::remove_dir(target);
        }
        let _ = std::fs::remove_dir(named);
    }

    /// `source` as tasks must see it: an idmapped mount at `target`, or a shifted copy.
    fn make_ready(&self, source: &Path, target: &Path) -> Result<PathBuf, DaemonError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(source.to_owned());
        }
        if self.mounts == Mounts::Private {
            let attached = dir_with_mode(target, 0o755)
                .and_then(|()| idmap::attach_idmapped_image(source, self.id_map, target));
            match attached {
                Ok(()) => return Ok(target.to_owned()),
                Err(error) => {
                    let _ = std::fs::remove_dir(target);
                    tracing::warn!(%error, "cannot make an idmapped mount of the image; copying it");
                }
            }
        }
        let name = source
            .file_name()
            .map_or_else(|| "image".into(), |name| name.to_string_lossy().into_owned());
        let copy = self.images_dir.join(format!("{name}.{}", self.id_map.first_uid));
        image::shifted_copy(source, &copy, self.id_map.first_uid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PathBuf>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates the directory `path` with `mode`, unless a directory is there already (a daemon
/// that did not stop cleanly leaves its state directory's subdirectories behind).
pub fn dir_with_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Err(_) if path.is_dir() => Ok(()),
        created => created,
    }
}
