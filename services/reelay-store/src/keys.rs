//! Ordered keys: big-endian numbers sort like the numbers; composite keys are fixed-width parts
//! or a length-prefixed string followed by the rest.

use std::ops::Bound;

use crate::Bytes;

/// The bounds that select every key starting with `prefix`.
pub fn prefix_range(prefix: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    let end = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    (Bound::Included(prefix.to_vec()), end)
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a big-endian u64 from the first 8 bytes of `bytes`.
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// `len(part) as u8 | part | rest`: a variable-length string part that keeps prefix scans exact.
pub fn with_str_part(part: &str, rest: &[u8]) -> Bytes {
    let part = &part.as_bytes()[..part.len().min(255)];
    let mut key = Vec::with_capacity(1 + part.len() + rest.len());
    key.push(part.len() as u8);
    key.extend_from_slice(part);
    key.extend_from_slice(rest);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn numbers_sort_like_their_keys() {
        assert!(u64_key(255) < u64_key(256));
        assert_eq!(read_u64(&u64_key(42)), Some(42));
        assert_eq!(read_u64(b"short"), None);
    }

    #[test]
    fn string_parts_do_not_collide() {
        // "a" + "b..." must not share a prefix with "ab".
        assert!(!with_str_part("ab", b"").starts_with(&with_str_part("a", b"")));
    }
}
