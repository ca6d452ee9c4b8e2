//! Large reviews off the async workers.
//!
//! Parsing a multi-megabyte AdmissionReview, running the engine on it and writing the answer
//! takes milliseconds of CPU. Done on a tokio worker, that stalls every other connection the
//! worker drives, so small reviews queue behind one big one. A review whose body is larger than
//! [`ServeOptions::blocking_threshold_bytes`] runs on tokio's blocking pool instead, at most
//! [`ServeOptions::blocking_permits`] at a time; a review that finds no permit free waits
//! for one. The permit travels with the work, so a request cut off by its deadline keeps its
//! permit until its work really ends, and the bound holds.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::options::ServeOptions;

/// Why work sent to the blocking pool gave no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlockingError {
    /// The work panicked; the panic message is kept for the log.
    #[error("review processing panicked: {0}")]
    Panicked(String),
    /// The runtime is shutting down and dropped the work.
    #[error("review processing was cancelled (the server is shutting down)")]
    Cancelled,
}

/// The blocking pool as large reviews use it: the size at which they move there, and the
/// permits that bound how many run at once.
#[derive(Debug, Clone)]
pub(crate) struct BlockingLane {
    threshold_bytes: usize,
    permits: Arc<Semaphore>,
}

// === impl BlockingLane ===

impl BlockingLane {
    /// A lane with the options' threshold and permits (at least one permit).
    pub(crate) fn new(options: &ServeOptions) -> Self {
        BlockingLane {
            threshold_bytes: options.blocking_threshold_bytes,
            permits: Arc::new(Semaphore::new(options.blocking_permits.max(1))),
        }
    }

    /// Whether a body of `length` bytes is processed on the blocking pool.
    pub(crate) fn takes(&self, length: usize) -> bool {
        length > self.threshold_bytes
    }

    /// Runs `work` on the blocking pool once a permit is free; a panic becomes an error.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, BlockingError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_closed| BlockingError::Cancelled)?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        });
        task.await.map_err(|error| match error.try_into_panic() {
            Ok(payload) => BlockingError::Panicked(panic_message(payload.as_ref())),
            Err(_cancelled) => BlockingError::Cancelled,
        })
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(threshold_bytes: usize, permits: usize) -> BlockingLane {
        BlockingLane::new(&ServeOptions {
            blocking_threshold_bytes: threshold_bytes,
            blocking_permits: permits,
            ..ServeOptions::default()
        })
    }

    #[test]
    fn bodies_over_the_threshold_take_the_lane() {
        let lane = lane(100, 1);
        assert!(!lane.takes(100));
        assert!(lane.takes(101));
    }

    #[tokio::test]
    async fn work_runs_off_the_worker_and_a_panic_is_an_error() {
        let lane = lane(0, 2);
        let worker = std::thread::current().id();
        let ran_on = lane.run(|| std::thread::current().id()).await.unwrap();
        assert_ne!(ran_on, worker, "the work ran on the async worker");
        let error = lane.run(|| -> u8 { panic!("boom") }).await.unwrap_err();
        assert!(
            matches!(&error, BlockingError::Panicked(message) if message == "boom"),
            "{error}"
        );
        assert_eq!(lane.run(|| 7).await.unwrap(), 7, "a panic does not lose its permit");
    }

    #[tokio::test]
    async fn no_more_than_the_permits_run_at_once_and_the_rest_wait() {
        let lane = lane(0, 2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (lane, running, most) = (lane.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    lane.run(move || {
                        use std::sync::atomic::Ordering::SeqCst;
                        let now = running.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn zero_permits_still_lets_work_through() {
        assert_eq!(lane(0, 0).permits.available_permits(), 1);
    }
}
