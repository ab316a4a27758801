//! The images tasks' roots are overlays of, as tasks must see them (owned by their mapped
//! root): the daemon's own (`--image`, or the default built on first run) and the named
//! images of the images directory (`rrockerd image import`). Each uid slice
//! ([`crate::isolator::uid_slices`]) gets its own view of an image on first use: an idmapped
//! read-only mount in the daemon's private mount namespace at
//! `<state>/views/<slice>/own` or `.../image-<name>`, or else (no private namespace, or no
//! idmapped mounts there) a copy with shifted owners in the images directory; an
//! unprivileged daemon uses an image as it is. A slice's views are unmounted when the slice
//! frees.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rrocker_uring::IdMap;

use crate::Mounts;
use crate::dirs::{dir_with_mode, private_dir};
use crate::image::build;
use crate::image::error::ImageError;
use crate::image::idmap;
use crate::image::import;
use crate::io_context::IoContext;

/// One view of an image for one slice: `None` until it is made.
type ViewCell = Arc<Mutex<Option<PathBuf>>>;

/// The images, and every view of them this daemon made.
#[derive(Debug)]
pub struct Images {
    images_dir: PathBuf,
    /// The daemon's own image.
    own: PathBuf,
    /// Where views are attached: `<state>/views`.
    views_dir: PathBuf,
    mounts: Mounts,
    /// Images are used as they are (an unprivileged daemon, or tests).
    as_is: bool,
    /// Each view, by image name ("" for the daemon's own) and slice, once made. Each has a
    /// lock of its own, held while it is made, so that a first use waits only for its own
    /// view and never holds up the others.
    views: Mutex<HashMap<(String, u32), ViewCell>>,
    /// The template user namespace of each slice's mapping, made once.
    templates: Mutex<HashMap<u32, Arc<OwnedFd>>>,
}

impl Images {
    /// The daemon's own image is `image`, or the default one (built in `images_dir` if it is
    /// not there yet); views are attached below `state_dir`.
    pub fn new(
        image: Option<&Path>,
        images_dir: &Path,
        state_dir: &Path,
        mounts: Mounts,
    ) -> Result<Self, ImageError> {
        private_dir(images_dir).context("create", images_dir)?;
        let own = match image {
            Some(image) => image.to_owned(),
            None => build::ensure_default(&images_dir.join(build::DEFAULT_IMAGE))?,
        };
        let views_dir = state_dir.join("views");
        let as_is = !rustix::process::geteuid().is_root();
        if !as_is {
            // A crashed run's views vanished with its mount namespace; their directories stay.
            let _ = std::fs::remove_dir_all(&views_dir);
            dir_with_mode(&views_dir, 0o700).context("create", &views_dir)?;
        }
        Ok(Self {
            images_dir: images_dir.to_owned(),
            own,
            views_dir,
            mounts,
            as_is,
            views: Mutex::default(),
            templates: Mutex::default(),
        })
    }

    /// The view of the image `name` (`""`: the daemon's own) for `slice`, whose ids are `map`,
    /// made on first use. A name that is not an image of the images directory is refused in
    /// one line.
    pub fn get(&self, name: &str, slice: u32, map: IdMap) -> Result<PathBuf, ImageError> {
        let key = (name.to_owned(), slice);
        let made = lock(&self.views).get(&key).cloned();
        if let Some(view) = made.as_ref().and_then(|cell| lock(cell).clone()) {
            return Ok(view);
        }
        let source = if name.is_empty() {
            self.own.clone()
        } else {
            import::check_name(name)?;
            self.images_dir.join(name)
        };
        if !source.is_dir() {
            return Err(ImageError::Invalid(format!(
                "Image '{name}' doesn't exist on this host; import one with `rrockerd image import FILE.tar --name {name}`"
            )));
        }
        let cell = Arc::clone(lock(&self.views).entry(key).or_default());
        // Held while this view is made, so that two first uses make it once.
        let mut view = lock(&cell);
        if let Some(made) = view.as_ref() {
            return Ok(made.clone());
        }
        let made = if self.as_is { source } else { self.shifted(&source, name, slice, map)? };
        tracing::debug!(image = name, slice, "made a view of an image");
        *view = Some(made.clone());
        Ok(made)
    }

    /// Unmounts every view of `slice` and removes the directories they were attached at.
    pub fn release_slice(&self, slice: u32) {
        lock(&self.views).retain(|(_, of), _| *of != slice);
        let dir = self.views_dir.join(slice.to_string());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for target in entries.flatten().map(|entry| entry.path()) {
                let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
                let _ = std::fs::remove_dir(&target);
            }
        }
        let _ = std::fs::remove_dir(dir);
    }

    /// Unmounts every view (at shutdown).
    pub fn release(&self) {
        let slices: Vec<u32> = lock(&self.views).keys().map(|(_, slice)| *slice).collect();
        slices.into_iter().for_each(|slice| self.release_slice(slice));
        let _ = std::fs::remove_dir(&self.views_dir);
    }

    /// The template user namespace of `slice`'s mapping `map`, made on first use (outside
    /// the lock: two first uses may both make one, and one is kept).
    fn template(&self, slice: u32, map: IdMap) -> std::io::Result<Arc<OwnedFd>> {
        if let Some(userns) = lock(&self.templates).get(&slice) {
            return Ok(Arc::clone(userns));
        }
        let made = Arc::new(idmap::template_userns(map)?);
        Ok(Arc::clone(lock(&self.templates).entry(slice).or_insert(made)))
    }

    /// `source` as the tasks of `slice` must see it, its owners shifted into `map`: an
    /// idmapped mount, or a shifted copy.
    fn shifted(
        &self,
        source: &Path,
        name: &str,
        slice: u32,
        map: IdMap,
    ) -> Result<PathBuf, ImageError> {
        if self.mounts == Mounts::Private {
            let dir = self.views_dir.join(slice.to_string());
            let target =
                dir.join(if name.is_empty() { "own".to_owned() } else { format!("image-{name}") });
            let attached = dir_with_mode(&dir, 0o700)
                .and_then(|()| dir_with_mode(&target, 0o755))
                .and_then(|()| {
                    let userns = self.template(slice, map)?;
                    idmap::attach_idmapped_image(source, &userns, &target)
                });
            match attached {
                Ok(()) => return Ok(target),
                Err(error) => {
                    let _ = std::fs::remove_dir(&target);
                    tracing::warn!(%error, "cannot make an idmapped mount of the image; copying it");
                }
            }
        }
        let name = source
            .file_name()
            .map_or_else(|| "image".into(), |name| name.to_string_lossy().into_owned());
        let copy = self.images_dir.join(format!("{name}.{}", map.first_uid));
        build::shifted_copy(source, &copy, map.first_uid)
    }
}

#[cfg(test)]
impl Images {
    /// Only `image`, used as it is (already owned by the tasks' root), with no named image.
    pub fn as_is(image: &Path) -> Self {
        Self {
            images_dir: PathBuf::from("/nonexistent"),
            own: image.to_owned(),
            views_dir: PathBuf::from("/nonexistent"),
            mounts: Mounts::Host,
            as_is: true,
            views: Mutex::default(),
            templates: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
