//! A thread of a namespace machine's host side that polls its own fds and
//! a wake pipe (the tty bridges), and stops when asked:
//! [`Worker::stop`] (also on drop) sets the stop flag, wakes the thread
//! and joins it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::ns;

/// A stoppable polling thread.
#[derive(Debug)]
pub struct Worker {
    stop: Arc<AtomicBool>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts thread `name` running `body(wake, stop)`: `wake` becomes
    /// readable and `stop` true when the worker is to end.
    pub fn spawn(
        name: String,
        body: impl FnOnce(&OwnedFd, &AtomicBool) + Send + 'static,
    ) -> io::Result<Worker> {
        let (wake_rx, wake) = ns::pipe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(&wake_rx, &thread_stop))?;
        Ok(Worker {
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (what it owns is then closed).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = ns::write_byte(self.wake.as_fd());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}
