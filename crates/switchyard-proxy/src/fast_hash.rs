//! A fast, non-keyed hash (a folded multiply per word) for maps on the request path
//! whose keys come from configuration, never from clients (so hash flooding is not a
//! concern): the connection pool and the DnsRecord table. SipHash costs several hundred
//! instructions per lookup there.

/// Builds [`FastHasher`]s.
#[derive(Clone, Copy, Default)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

pub struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        // Folded multiply (as foldhash does): the high half of the product mixes every
        // input bit into every output bit, which Fx's plain multiply does not.
        let product = u128::from(self.0 ^ word) * 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::FastHash;

    #[test]
    fn equal_keys_hash_equal_and_different_keys_spread() {
        let hash = |s: &str| FastHash.hash_one(s);
        assert_eq!(hash("orders.internal:8080"), hash("orders.internal:8080"));
        let distinct: std::collections::HashSet<u64> = (0..1000).map(|i| hash(&format!("10.0.{}.{}:80", i / 256, i % 256))).collect();
        assert_eq!(distinct.len(), 1000);
    }
}
