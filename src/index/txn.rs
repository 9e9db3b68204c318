//! A read-your-writes overlay over the sled tree that becomes one atomic
//! batch. Updates run under the index's write lock, so reads through the
//! overlay see a consistent state.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{IndexError, Result};

pub struct Txn<'t> {
    tree: &'t sled::Tree,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|source| IndexError::Decode { key: String::from_utf8_lossy(key).replace('\0', "/"), source })
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain structs to a Vec cannot fail.
    postcard::to_stdvec(v).unwrap_or_default()
}

impl<'t> Txn<'t> {
    pub fn new(tree: &'t sled::Tree) -> Self {
        Txn { tree, pending: BTreeMap::new() }
    }

    pub fn get_raw(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(k) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(k)?.map(|v| v.to_vec()))
    }

    pub fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        self.get_raw(k)?.map(|v| decode(k, &v)).transpose()
    }

    pub fn put<T: Serialize>(&mut self, k: Vec<u8>, v: &T) {
        self.pending.insert(k, Some(encode(v)));
    }

    pub fn put_raw(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.pending.insert(k, Some(v));
    }

    pub fn del(&mut self, k: Vec<u8>) {
        self.pending.insert(k, None);
    }

    /// Entries under `prefix`, with pending writes applied.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            merged.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.pending.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Adds `delta` to a signed counter under `k`.
    pub fn bump(&mut self, k: Vec<u8>, delta: i64) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        let now = self.get_raw(&k)?.and_then(|v| v.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0);
        self.put_raw(k, (now + delta).to_le_bytes().to_vec());
        Ok(())
    }

    pub fn commit(self) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in self.pending {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}
