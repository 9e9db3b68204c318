//! WADO-RS series metadata, kept in memory once encoded: a series' metadata
//! changes only when an instance arrives, while viewers ask for it every
//! time a study opens. Entries carry the version they were built from
//! (instance count and bytes of the series, last arrival in the study), so
//! an arrival makes the old entry unusable; least recently used entries go
//! first when the cache is full.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// What a series' metadata was built from.
pub type Version = (u32, u64, u64);

pub struct MetaCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

struct Entry {
    version: Version,
    body: Bytes,
    used: u64,
}

impl MetaCache {
    pub fn new(max_bytes: usize) -> Self {
        MetaCache { max_bytes, inner: Mutex::new(Inner::default()) }
    }

    pub fn get(&self, series: &str, version: Version) -> Option<Bytes> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.clock += 1;
        let now = g.clock;
        let e = g.map.get_mut(series).filter(|e| e.version == version)?;
        e.used = now;
        Some(e.body.clone())
    }

    pub fn put(&self, series: &str, version: Version, body: Bytes) {
        if body.len() > self.max_bytes / 4 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.clock += 1;
        let used = g.clock;
        if let Some(old) = g.map.insert(series.to_owned(), Entry { version, body: body.clone(), used }) {
            g.bytes -= old.body.len();
        }
        g.bytes += body.len();
        while g.bytes > self.max_bytes {
            let Some(oldest) = g.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { break };
            if let Some(e) = g.map.remove(&oldest) {
                g.bytes -= e.body.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_versions_miss_and_old_entries_go_first() {
        let c = MetaCache::new(400);
        c.put("a", (1, 10, 5), Bytes::from(vec![b'a'; 100]));
        assert!(c.get("a", (1, 10, 5)).is_some());
        assert!(c.get("a", (2, 20, 6)).is_none(), "a new arrival must not see the old metadata");
        c.put("b", (1, 1, 1), Bytes::from(vec![b'b'; 100]));
        c.put("c", (1, 1, 1), Bytes::from(vec![b'c'; 100]));
        c.get("a", (1, 10, 5));
        c.put("d", (1, 1, 1), Bytes::from(vec![b'd'; 100]));
        c.put("e", (1, 1, 1), Bytes::from(vec![b'e'; 100]));
        assert!(c.get("b", (1, 1, 1)).is_none(), "least recently used goes first");
        assert!(c.get("a", (1, 10, 5)).is_some());
        assert!(c.get("e", (1, 1, 1)).is_some());
    }
}
