//! Keys and values of the data database (layout in the [module docs](super)).
//!
//! Every name in a key (tenant, resource, metric) is written as `u16 BE length ‖ UTF-8 bytes`, so
//! no name can end inside another's and a prefix of whole parts selects exactly one tenant,
//! resource or series. Timestamps are `i64` with the sign bit flipped, big-endian, so byte order
//! is time order over the whole range.

use switchyard_storage::StorageError;
use switchyard_storage::data::{ResourceKey, Value};

/// Longest name part accepted in a key (fjall keys are limited to 64 KiB in all).
pub const MAX_PART: usize = 16 * 1024;
/// `messageId`s longer than this are keyed by their SHA-256 instead.
const INLINE_ID: usize = 1024;
/// "Never expires" in stored expiry fields.
pub const NEVER: i64 = i64::MAX;

/// What an entry of the `expiry` keyspace points at.
pub const KIND_MESSAGE: u8 = 0;
pub const KIND_CHUNK: u8 = 1;
pub const KIND_ID: u8 = 2;

fn push_part(out: &mut Vec<u8>, name: &str) -> Result<(), StorageError> {
    if name.len() > MAX_PART {
        return Err(StorageError::Backend(format!("name of {} bytes is longer than {MAX_PART}", name.len())));
    }
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// `tenant` as the first part of a key: everything of the tenant is under it.
pub fn tenant_prefix(tenant: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(2 + tenant.len());
    push_part(&mut out, tenant)?;
    Ok(out)
}

/// `tenant ‖ resource`: everything of the resource is under it.
pub fn resource_prefix(key: &ResourceKey) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(4 + key.tenant.len() + key.resource.len() + 32);
    push_part(&mut out, &key.tenant)?;
    push_part(&mut out, &key.resource)?;
    Ok(out)
}

/// `tenant ‖ resource ‖ metric`: the key of one series in `series`, the prefix of its points.
pub fn series_prefix(resource: &[u8], metric: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(resource.len() + 2 + metric.len() + 8);
    series_prefix_into(&mut out, resource, metric)?;
    Ok(out)
}

/// [`series_prefix`] into `out`, replacing what it held (the write path reuses one buffer).
pub fn series_prefix_into(out: &mut Vec<u8>, resource: &[u8], metric: &str) -> Result<(), StorageError> {
    out.clear();
    out.extend_from_slice(resource);
    push_part(out, metric)
}

/// The `tenant ‖ resource` prefix a message, point or series key starts with.
pub fn resource_of(key: &[u8]) -> Result<&[u8], StorageError> {
    let mut end = 0;
    for _ in 0..2 {
        let len = key.get(end..end + 2).ok_or_else(|| corrupt("key part"))?;
        end += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    key.get(..end).ok_or_else(|| corrupt("key part"))
}

/// The metric name at the end of a `series` key under `resource`.
pub fn metric_of(key: &[u8], resource: &[u8]) -> Result<String, StorageError> {
    let rest = key.get(resource.len()..).ok_or_else(|| corrupt("series key"))?;
    let (len, name) = rest.split_at_checked(2).ok_or_else(|| corrupt("series key"))?;
    if usize::from(u16::from_be_bytes([len[0], len[1]])) != name.len() {
        return Err(corrupt("series key length"));
    }
    String::from_utf8(name.to_vec()).map_err(|_| corrupt("metric name is not UTF-8"))
}

/// Order-preserving bytes of a timestamp.
pub fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// `prefix ‖ ts`.
pub fn with_ts(prefix: &[u8], ts: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 16);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&ts_bytes(ts));
    out
}

/// The timestamp at `at` in `bytes`.
pub fn ts_at(bytes: &[u8], at: usize) -> Result<i64, StorageError> {
    let raw: [u8; 8] = bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("timestamp"))?;
    Ok((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

/// One message's key: `resource ‖ ts ‖ u64 BE arrival`.
pub fn message_key(resource: &[u8], ts: i64, seq: u64) -> Vec<u8> {
    let mut out = with_ts(resource, ts);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// A `messageId`'s key: `resource ‖ 'k' ‖ id`, or `resource ‖ 'h' ‖ SHA-256(id)` when long.
pub fn id_key(resource: &[u8], id: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(resource.len() + 1 + id.len().min(32));
    out.extend_from_slice(resource);
    if id.len() <= INLINE_ID {
        out.push(b'k');
        out.extend_from_slice(id.as_bytes());
    } else {
        out.push(b'h');
        out.extend_from_slice(&Sha256::digest(id.as_bytes()));
    }
    out
}

/// An `expiry` key: `ts ‖ kind ‖ key of the thing that expires`.
pub fn expiry_key(at: i64, kind: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.extend_from_slice(&ts_bytes(at));
    out.push(kind);
    out.extend_from_slice(key);
    out
}

/// `expires_at` as stored (first 8 bytes of message, point and chunk values).
pub fn expiry_bytes(expires_at: Option<i64>) -> [u8; 8] {
    ts_bytes(expires_at.unwrap_or(NEVER))
}

/// The expiry at the start of a stored value.
pub fn expiry_of(value: &[u8]) -> Result<i64, StorageError> {
    ts_at(value, 0)
}

/// A message's points after its expiry: per point `u16 BE length ‖ metric ‖ value`, the value
/// `0 ‖ f64 BE` or `1 ‖ u32 BE length ‖ UTF-8`.
pub fn head_value(expires_at: Option<i64>, points: &[(std::sync::Arc<str>, Value)]) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(8 + points.len() * 20);
    out.extend_from_slice(&expiry_bytes(expires_at));
    for (metric, value) in points {
        push_part(&mut out, metric)?;
        match value {
            Value::Number(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_bits().to_be_bytes());
            }
            Value::Text(s) => {
                out.push(1);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    Ok(out)
}

/// The first `n` bytes of `rest`, which moves past them.
fn take<'a>(n: usize, rest: &mut &'a [u8]) -> Result<&'a [u8], StorageError> {
    let (head, tail) = rest.split_at_checked(n).ok_or_else(|| corrupt("head entry"))?;
    *rest = tail;
    Ok(head)
}

/// A head entry decoded: its expiry and its points (metric, value), names borrowed.
pub type HeadEntry<'a> = (i64, Vec<(&'a str, Value)>);

/// The expiry and points of a stored head entry.
pub fn decode_head(value: &[u8]) -> Result<HeadEntry<'_>, StorageError> {
    let expiry = expiry_of(value)?;
    let mut rest = &value[8..];
    let mut points = Vec::new();
    while !rest.is_empty() {
        let len = take(2, &mut rest)?;
        let metric = take(usize::from(u16::from_be_bytes([len[0], len[1]])), &mut rest)?;
        let metric = std::str::from_utf8(metric).map_err(|_| corrupt("metric name is not UTF-8"))?;
        let value = match take(1, &mut rest)?[0] {
            0 => Value::Number(f64::from_bits(u64::from_be_bytes(take(8, &mut rest)?.try_into().unwrap_or([0; 8])))),
            1 => {
                let len = u32::from_be_bytes(take(4, &mut rest)?.try_into().unwrap_or([0; 4])) as usize;
                let text = std::str::from_utf8(take(len, &mut rest)?).map_err(|_| corrupt("text is not UTF-8"))?;
                Value::Text(text.into())
            }
            _ => return Err(corrupt("point value")),
        };
        points.push((metric, value));
    }
    Ok((expiry, points))
}

/// The length of `R` at the start of a series key `R ‖ metric`.
pub fn resource_len(series: &[u8]) -> Result<usize, StorageError> {
    let mut at = 0;
    for _ in 0..2 {
        let len = series.get(at..at + 2).ok_or_else(|| corrupt("series key"))?;
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    if at > series.len() { Err(corrupt("series key")) } else { Ok(at) }
}

pub fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("data store: {what}"))
}

pub fn backend(context: &str, e: fjall::Error) -> StorageError {
    StorageError::Backend(format!("data store: {context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_bytes() {
        let ts = [i64::MIN, -1_000, -1, 0, 1, 255, 256, 1_700_000_000_000, i64::MAX];
        for pair in ts.windows(2) {
            assert!(ts_bytes(pair[0]) < ts_bytes(pair[1]), "{pair:?}");
            assert_eq!(ts_at(&ts_bytes(pair[0]), 0).unwrap(), pair[0]);
        }
    }

    #[test]
    fn parts_cannot_forge_each_other() {
        let key = |t: &str, r: &str| resource_prefix(&ResourceKey { tenant: t.into(), resource: r.into() }).unwrap();
        let a = key("a", "bc");
        let ab = key("ab", "c");
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab));
        assert!(!key("a", "b").starts_with(&tenant_prefix("ab").unwrap()));
        let series = series_prefix(&a, "m.x").unwrap();
        assert_eq!(metric_of(&series, &a).unwrap(), "m.x");
    }

    #[test]
    fn head_entries_round_trip() {
        let points: Vec<(std::sync::Arc<str>, Value)> = vec![
            ("a".into(), Value::Number(-0.0)),
            ("".into(), Value::Text("é".into())),
            ("b.c".into(), Value::Text("".into())),
            ("n".into(), Value::Number(f64::NAN)),
        ];
        let stored = head_value(Some(7), &points).unwrap();
        let (expiry, back) = decode_head(&stored).unwrap();
        assert_eq!(expiry, 7);
        assert_eq!(back.len(), 4);
        for ((name, value), (back_name, back_value)) in points.iter().zip(&back) {
            assert_eq!(&**name, *back_name);
            match (value, back_value) {
                (Value::Number(a), Value::Number(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => assert_eq!(a, b),
            }
        }
        assert_eq!(decode_head(&head_value(None, &[]).unwrap()).unwrap().0, NEVER);
        assert!(decode_head(&stored[..stored.len() - 1]).is_err());
        let series =
            series_prefix(&resource_prefix(&ResourceKey { tenant: "t".into(), resource: "rr".into() }).unwrap(), "m")
                .unwrap();
        assert_eq!(resource_len(&series).unwrap(), 7);
    }
}
