//! The record of a small batch, written as one value before its writes are applied one by one.
//!
//! sled 0.34's atomic batch seals and writes its IO buffer twice (before and after a batch
//! manifest), each time through its IO thread pool, which wakes every one of its threads: under
//! load a batch of five small writes costs several times the five writes. A batch of a few writes
//! is cheaper stored as an *intent*: one value holding all of its writes, then the writes one by
//! one, then the intent removed. sled recovers a prefix of its log after a crash (it stops at the
//! first message missing from its tail), so a write of the batch that survived a crash has its
//! intent before it; the next open finds the intent and applies it whole ([`decode`] gives its
//! writes back), and a batch whose intent did not survive left nothing behind.
//!
//! Format: per write, the stored key's length (u32, big-endian) and bytes, then `1` with the
//! value's length and bytes for a put, or `0` for a delete.

/// One write of a batch, with its key as stored (tree prefix included); `None`: delete.
pub(crate) type StoredWrite = (Vec<u8>, Option<Vec<u8>>);

/// Encodes `writes` as one intent value.
pub(crate) fn encode<'a>(
    writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Vec<u8> {
    let mut intent = Vec::new();
    for (key, value) in writes {
        put_bytes(&mut intent, key);
        match value {
            Some(value) => {
                intent.push(1);
                put_bytes(&mut intent, value);
            }
            None => intent.push(0),
        }
    }
    intent
}

/// The writes of an intent, in order; `None` when the value is not one [`encode`] made.
pub(crate) fn decode(mut intent: &[u8]) -> Option<Vec<StoredWrite>> {
    let mut writes = Vec::new();
    while !intent.is_empty() {
        let key = take_bytes(&mut intent)?;
        let (&kind, rest) = intent.split_first()?;
        intent = rest;
        let value = match kind {
            1 => Some(take_bytes(&mut intent)?),
            0 => None,
            _ => return None,
        };
        writes.push((key, value));
    }
    Some(writes)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values of a small batch are far below 4 GiB (sled itself caps them lower).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes(input: &mut &[u8]) -> Option<Vec<u8>> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (bytes, rest) = rest.split_at(len);
    *input = rest;
    Some(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_and_deletes_round_trip_in_order() {
        let writes: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"\x01job", Some(b"record")),
            (b"\x02gone", None),
            (b"\x01empty", Some(b"")),
            (b"", Some(b"v")),
        ];
        let decoded = decode(&encode(writes.clone())).expect("decodes");
        let expected: Vec<StoredWrite> = writes
            .into_iter()
            .map(|(key, value)| (key.to_vec(), value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(decode(&[]), Some(Vec::new()));
    }

    #[test]
    fn a_value_that_is_not_an_intent_is_refused() {
        let whole = encode([(&b"key"[..], Some(&b"value"[..]))]);
        for cut in 1..whole.len() {
            assert_eq!(decode(&whole[..cut]), None, "cut at {cut}");
        }
        let mut bad_kind = encode([(&b"key"[..], None)]);
        *bad_kind.last_mut().expect("a kind byte") = 7;
        assert_eq!(decode(&bad_kind), None);
    }
}
