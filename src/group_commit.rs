//! Group commit: many writers, one flush. Each write takes a ticket; a
//! writer waiting for durability either finds a flush that started after its
//! write already done, or runs one that covers every write so far. On a disk
//! where a flush costs milliseconds, concurrent writers share that cost.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

#[derive(Default)]
pub struct GroupCommit {
    written: AtomicU64,
    durable: AtomicU64,
    flushing: Mutex<()>,
}

impl GroupCommit {
    /// Records a write; returns its ticket.
    pub fn written(&self) -> u64 {
        self.written.fetch_add(1, SeqCst) + 1
    }

    /// The ticket of the latest write.
    pub fn latest(&self) -> u64 {
        self.written.load(SeqCst)
    }

    /// Returns once the write with `ticket` is durable, calling `flush` only
    /// if no other writer's flush covered it.
    pub fn wait<E>(&self, ticket: u64, flush: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        if self.durable.load(SeqCst) >= ticket {
            return Ok(());
        }
        let _g = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        if self.durable.load(SeqCst) >= ticket {
            return Ok(());
        }
        let covers = self.written.load(SeqCst);
        flush()?;
        self.durable.fetch_max(covers, SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn one_flush_covers_every_earlier_write() {
        let g = GroupCommit::default();
        let flushes = AtomicU32::new(0);
        let flush = || -> Result<(), ()> {
            flushes.fetch_add(1, SeqCst);
            Ok(())
        };
        let (a, b) = (g.written(), g.written());
        g.wait(b, flush).unwrap();
        g.wait(a, flush).unwrap();
        assert_eq!(flushes.load(SeqCst), 1);
        let c = g.written();
        g.wait(c, flush).unwrap();
        assert_eq!(flushes.load(SeqCst), 2);
    }
}
