//! Works around glommio 0.9's io_uring poll-ring probe.
//!
//! glommio decides per thread and per block device whether O_DIRECT reads
//! may go to its IOPOLL ring by issuing one read through that ring on the
//! first file it opens there. If that file is empty (as a new segment is),
//! the kernel answers the read at end-of-file without touching the device,
//! the probe "succeeds", and every later read on a device without poll
//! support (virtio disks, most cloud volumes) fails with EOPNOTSUPP. So,
//! before the first segment file is opened on a device in a thread, we
//! open a small file that has data and let the probe make a real read.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::{Result, StorageError};

thread_local!(static PROBED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new()));

/// Makes sure glommio's poll-ring probe for the device holding `dir` ran on
/// a real read in this thread. Cheap after the first call.
pub async fn ensure_probed(dir: &Path) -> Result<()> {
    let dev = std::fs::metadata(dir)
        .map_err(|e| StorageError::io("stat", dir, e))?
        .dev();
    if PROBED.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let path = dir.join(format!(".iopoll-probe-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; 4096]).map_err(|e| StorageError::io("writing probe file", &path, e))?;
    let opened = glommio::io::DmaFile::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let file = opened.map_err(|e| StorageError::io("opening probe file", &path, e))?;
    let _ = file.close().await;
    PROBED.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}
