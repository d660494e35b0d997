//! Forwarded records as JSON (SPEC §6): `{"id", "domain", "resource", "channel", "message"}`,
//! the message embedded as stored (it is a normalized JSON object already).

use switchyard_storage::OutboxRecord;

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// Appends one record's JSON to `out`.
pub fn write_record(out: &mut Vec<u8>, record: &OutboxRecord) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(record.id().as_bytes());
    out.extend_from_slice(b"\",\"domain\":");
    push_json_str(out, &record.tenant);
    out.extend_from_slice(b",\"resource\":");
    push_json_str(out, &record.resource);
    out.extend_from_slice(b",\"channel\":\"");
    out.extend_from_slice(record.channel.as_str().as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    if record.body.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(&record.body);
    }
    out.push(b'}');
}

/// One record's JSON.
pub fn record_json(record: &OutboxRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + record.body.len());
    write_record(&mut out, record);
    out
}

/// A JSON array of records, as a webhook receives it.
pub fn batch_json(records: &[OutboxRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + records.iter().map(|r| 97 + r.body.len()).sum::<usize>());
    out.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record(&mut out, record);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_storage::data::Channel;

    use super::*;

    fn record(seq: u64, resource: &str, channel: Channel) -> OutboxRecord {
        OutboxRecord {
            seq,
            at: 0,
            tenant: "acme.example".into(),
            resource: resource.into(),
            channel,
            body: Bytes::from_static(br#"{"t":1,"resource":"r"}"#),
        }
    }

    #[test]
    fn records_are_json_with_every_field() {
        let body = batch_json(&[record(1, "r", Channel::Events), record(2, "q\"\n", Channel::Commands)]);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                {"id": "00000000000000000001", "domain": "acme.example", "resource": "r", "channel": "events",
                 "message": {"t": 1, "resource": "r"}},
                {"id": "00000000000000000002", "domain": "acme.example", "resource": "q\"\n", "channel": "commands",
                 "message": {"t": 1, "resource": "r"}},
            ])
        );
        assert_eq!(batch_json(&[]), b"[]");
    }
}
