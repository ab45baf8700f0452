//! Single-use, expiring, bounded token cache for pending streaming requests.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use tokio::time::Instant;

use crate::Error;
use crate::request::Pending;

/// Random bytes per token (192 bits from the OS RNG; 32 URL-safe characters).
const TOKEN_BYTES: usize = 24;

struct Entry {
    request: Pending,
    expires: Instant,
    seq: u64,
}

/// Maps tokens to pending requests. Not internally synchronised.
pub struct TokenCache {
    ttl: Duration,
    max: usize,
    entries: HashMap<String, Entry>,
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

/// A fresh URL-safe token from the OS random source.
pub fn new_token() -> Result<String, Error> {
    let mut buf = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::Io(std::io::Error::other(format!("OS random source: {e}"))))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

impl TokenCache {
    /// A cache whose tokens live `ttl` and that holds at most `max` (at least 1) of them.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Number of live entries (expired ones may still be counted until the next insert).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores `request` and returns its new token; drops expired entries, then the oldest ones
    /// while full.
    pub fn insert(&mut self, request: Pending) -> Result<String, Error> {
        let now = Instant::now();
        while let Some((&seq, token)) = self.order.first_key_value() {
            let expired = self.entries.get(token).is_none_or(|e| e.expires <= now);
            if !expired && self.entries.len() < self.max {
                break;
            }
            let token = token.clone();
            self.order.remove(&seq);
            self.entries.remove(&token);
        }
        let token = loop {
            let t = new_token()?;
            if !self.entries.contains_key(&t) {
                break t;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, token.clone());
        self.entries.insert(
            token.clone(),
            Entry {
                request,
                expires: now + self.ttl,
                seq,
            },
        );
        Ok(token)
    }

    /// Removes and returns the request for `token` if it exists and has not expired.
    pub fn consume(&mut self, token: &str) -> Option<Pending> {
        let entry = self.entries.remove(token)?;
        self.order.remove(&entry.seq);
        (entry.expires > Instant::now()).then_some(entry.request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PortForwardRequest;

    fn pf(id: &str) -> Pending {
        Pending::PortForward(PortForwardRequest {
            pod_sandbox_id: id.into(),
            port: vec![],
        })
    }

    #[test]
    fn tokens_are_long_url_safe_and_distinct() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
    }

    /// 192 bits each; over 2,000 tokens every bit position is set about half the time (a
    /// counter, a clock or a short seed would leave positions fixed), and none repeats.
    #[test]
    fn tokens_are_192_uniform_bits() {
        const N: usize = 2000;
        let mut ones = [0usize; TOKEN_BYTES * 8];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..N {
            let t = new_token().expect("token");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&t)
                .expect("base64");
            assert_eq!(bytes.len() * 8, 192);
            for (i, one) in ones.iter_mut().enumerate() {
                *one += usize::from(bytes[i / 8] >> (i % 8) & 1);
            }
            assert!(seen.insert(t), "token repeated");
        }
        // Binomial(2000, 1/2): standard deviation ~22; 40..60 % is about 9 of them.
        for (i, one) in ones.iter().enumerate() {
            assert!(
                (800..=1200).contains(one),
                "bit {i} set in {one} of {N} tokens"
            );
        }
    }

    #[test]
    fn single_use() {
        let mut c = TokenCache::new(Duration::from_secs(60), 10);
        let t = c.insert(pf("a")).expect("insert");
        assert_eq!(c.consume(&t), Some(pf("a")));
        assert_eq!(c.consume(&t), None);
        assert_eq!(c.consume("nope"), None);
        assert!(c.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn expiry() {
        let mut c = TokenCache::new(Duration::from_secs(60), 10);
        let t = c.insert(pf("a")).expect("insert");
        let t2 = c.insert(pf("b")).expect("insert");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(c.consume(&t2), Some(pf("b")));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.consume(&t), None);
        // Expired entries are purged on insert.
        let t3 = c.insert(pf("c")).expect("insert");
        tokio::time::advance(Duration::from_secs(61)).await;
        c.insert(pf("d")).expect("insert");
        assert_eq!(c.len(), 1);
        assert_eq!(c.consume(&t3), None);
    }

    #[test]
    fn bounded_oldest_evicted() {
        let mut c = TokenCache::new(Duration::from_secs(60), 2);
        let a = c.insert(pf("a")).expect("insert");
        let b = c.insert(pf("b")).expect("insert");
        let d = c.insert(pf("d")).expect("insert");
        assert_eq!(c.len(), 2);
        assert_eq!(c.consume(&a), None);
        assert_eq!(c.consume(&b), Some(pf("b")));
        assert_eq!(c.consume(&d), Some(pf("d")));
    }
}
