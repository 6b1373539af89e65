//! A stop request shared across threads: set once, the first reason
//! wins, read without blocking. A run's script context and a suite's
//! scheduler both hold one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A stop request and its reason.
#[derive(Debug, Default)]
pub struct Stop {
    set: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Stop {
    /// Asks to stop with `reason` (the first reason given is kept).
    pub fn request(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| reason.to_owned());
        }
        self.set.store(true, Ordering::SeqCst);
    }

    /// Why a stop was asked for, if it was.
    pub fn requested(&self) -> Option<String> {
        if !self.set.load(Ordering::SeqCst) {
            return None;
        }
        Some(
            self.reason
                .lock()
                .ok()
                .and_then(|r| r.clone())
                .unwrap_or_else(|| "interrupted".to_owned()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins() {
        let s = Stop::default();
        assert_eq!(s.requested(), None);
        s.request("SIGINT received");
        s.request("SIGTERM received");
        assert_eq!(s.requested().as_deref(), Some("SIGINT received"));
    }
}
