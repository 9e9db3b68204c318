//! A process-wide budget of decoded bytes in flight: every codec decode
//! holds a share (rows × columns × samples × 4 bytes, its i32 output) while
//! it runs, so many large frames decoded at once (WADO-RS requests,
//! thumbnails, transcodes) cannot together exhaust memory. A decode that
//! cannot get its share within a few seconds is refused as busy.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::RenderError;

/// Decoded bytes in flight across the process.
pub const DECODE_BYTES: u64 = 1 << 30;
/// How long a decode waits for its share.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Budget {
    cap: u64,
    wait: Duration,
    in_use: Mutex<u64>,
    freed: Condvar,
}

pub static DECODES: Budget = Budget::new(DECODE_BYTES, WAIT);

/// Native pixel data of instances being re-encoded for peers (C-MOVE,
/// C-GET, WADO-RS) across the process: apart from `DECODES`, whose shares
/// each frame of a re-encoding takes as it decodes.
pub static REENCODES: Budget = Budget::new(2 << 30, Duration::from_secs(30));

/// A share of the budget, given back on drop.
pub struct Permit<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    pub const fn new(cap: u64, wait: Duration) -> Budget {
        Budget { cap, wait, in_use: Mutex::new(0), freed: Condvar::new() }
    }

    /// Waits (at most the budget's wait) until `bytes` fit, and holds them.
    pub fn acquire(&self, bytes: u64) -> Result<Permit<'_>, RenderError> {
        if bytes > self.cap {
            return Err(RenderError::TooLarge(format!("decoding needs {bytes} bytes, over the {}-byte decode budget", self.cap)));
        }
        let deadline = Instant::now() + self.wait;
        // A poisoned lock only means another decode panicked while holding
        // it; the count it guards is still consistent (updated in one step).
        let mut in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        while *in_use + bytes > self.cap {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RenderError::Busy(format!(
                    "{} bytes of frames are being decoded; {bytes} more did not fit in the {}-byte budget within {:?}",
                    *in_use, self.cap, self.wait
                )));
            }
            in_use = self.freed.wait_timeout(in_use, left).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        *in_use += bytes;
        Ok(Permit { budget: self, bytes })
    }

    #[cfg(test)]
    fn in_use(&self) -> u64 {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *in_use -= self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_share_the_budget_and_wait_for_it() {
        let b = Budget::new(100, Duration::from_millis(200));
        let first = b.acquire(60).unwrap();
        let t = Instant::now();
        assert!(matches!(b.acquire(50), Err(RenderError::Busy(_))));
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(matches!(b.acquire(101), Err(RenderError::TooLarge(_))));
        let second = b.acquire(40).unwrap();
        assert_eq!(b.in_use(), 100);
        // A waiter gets its share as soon as one is given back.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.acquire(50).map(|p| p.bytes));
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            assert_eq!(waiter.join().ok().and_then(Result::ok), Some(50));
        });
        drop(second);
        assert_eq!(b.in_use(), 0);
    }
}
