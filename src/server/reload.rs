//! Reloads files that change under a running server: TLS credentials and the config file.
//!
//! Kubelet updates Secret and ConfigMap volumes by writing a new timestamped folder and
//! swapping the `..data` symlink, so the file names never change and watching one file's
//! inode misses the update. [`FilePoller`] therefore reads every file's bytes each tick
//! (through the symlinks) and reloads when they differ. A tick whose two reads disagree
//! (files caught mid-update) is skipped. A set that fails to load keeps what is being
//! served, is logged and counted once, and is retried when its bytes change again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::metrics::{Metrics, ReloadKind};

/// The contents of a set of files, or why one could not be read.
type Snapshot = Result<Vec<Vec<u8>>, String>;

/// A set of files read together, remembering what was last acted on.
#[derive(Debug)]
pub struct FilePoller {
    paths: Vec<PathBuf>,
    last: Option<Snapshot>,
}

// === impl FilePoller ===

impl FilePoller {
    /// Polls `paths`; `loaded` is their content as loaded at start-up, if known.
    pub fn new(paths: Vec<PathBuf>, loaded: Option<Vec<Vec<u8>>>) -> Self {
        FilePoller {
            paths,
            last: loaded.map(Ok),
        }
    }

    fn read_all(&self) -> Snapshot {
        self.paths
            .iter()
            .map(|path| std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display())))
            .collect()
    }

    /// The new contents when they differ from the last ones acted on and are stable
    /// across two reads; `None` when nothing changed (or the files are mid-update).
    pub fn poll(&mut self) -> Option<Snapshot> {
        let first = self.read_all();
        if self.last.as_ref() == Some(&first) {
            return None;
        }
        if self.read_all() != first {
            return None;
        }
        self.last = Some(first.clone());
        Some(first)
    }
}

/// Polls `poller` every `interval` and hands changed contents to `apply`, which swaps them
/// in or says why not; each outcome is logged and counted under `kind`.
pub fn spawn<F>(
    mut poller: FilePoller,
    interval: Duration,
    kind: ReloadKind,
    metrics: Arc<Metrics>,
    mut apply: F,
) -> JoinHandle<()>
where
    F: FnMut(&[Vec<u8>]) -> Result<(), String> + Send + 'static,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(snapshot) = poller.poll() else {
                continue;
            };
            match snapshot.and_then(|contents| apply(&contents)) {
                Ok(()) => {
                    metrics.reloaded(kind);
                    tracing::info!(what = kind.as_str(), "reloaded");
                }
                Err(error) => {
                    metrics.reload_failed(kind);
                    tracing::error!(what = kind.as_str(), %error, "reload failed; keeping the previous one");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_change_once() {
        let dir = std::env::temp_dir().join(format!("reload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a");
        std::fs::write(&file, "one").unwrap();
        let mut poller = FilePoller::new(vec![file.clone()], Some(vec![b"one".to_vec()]));
        assert!(poller.poll().is_none());
        std::fs::write(&file, "two").unwrap();
        assert_eq!(poller.poll(), Some(Ok(vec![b"two".to_vec()])));
        assert!(poller.poll().is_none());
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(poller.poll(), Some(Err(message)) if message.contains("cannot read")));
        assert!(poller.poll().is_none(), "a lasting error is reported once");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
