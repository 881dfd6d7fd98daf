//! A stop signal that threads can wait on: a supervisor's backoff ends at once when
//! it is set, instead of sleeping through it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cloneable; every clone sees the same signal.
#[derive(Clone, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    /// A signal not set yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets it and wakes every waiter.
    pub fn set(&self) {
        let (flag, cv) = &*self.0;
        *flag.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        *self.0.0.lock().unwrap()
    }

    /// Waits until it is set or `timeout` passes; true if it is set.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (flag, cv) = &*self.0;
        let deadline = Instant::now() + timeout;
        let mut set = flag.lock().unwrap();
        while !*set {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            set = cv.wait_timeout(set, left).unwrap().0;
        }
        *set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_set_or_timeout() {
        let s = Stop::new();
        assert!(!s.wait(Duration::from_millis(10)));
        let t = s.clone();
        let h = std::thread::spawn(move || t.wait(Duration::from_secs(30)));
        s.set();
        assert!(h.join().unwrap(), "a waiter wakes when set, long before its timeout");
        assert!(s.is_set() && s.wait(Duration::ZERO));
    }
}
