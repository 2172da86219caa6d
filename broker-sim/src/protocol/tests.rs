use super::*;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

fn frame<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.freeze()
}

#[test]
fn should_decode_every_advertised_version_of_metadata_and_api_versions() {
    for v in 0..=12 {
        assert!(decode_frame(frame(ApiKey::Metadata, v, &MetadataRequest::default())).is_ok(), "Metadata v{v}");
    }
    for v in 0..=3 {
        assert!(
            decode_frame(frame(ApiKey::ApiVersions, v, &ApiVersionsRequest::default())).is_ok(),
            "ApiVersions v{v}"
        );
    }
}

#[test]
fn should_never_panic_on_random_or_mutated_frames() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = frame(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(Some(vec![Default::default()])));
    for _ in 0..20_000 {
        let mut f = valid.to_vec();
        let flips = (next() % 4 + 1) as usize;
        for _ in 0..flips {
            let i = (next() as usize) % f.len();
            f[i] = next() as u8;
        }
        f.truncate((next() as usize) % (f.len() + 1));
        let _ = decode_frame(Bytes::from(f));
        let len = (next() % 64) as usize;
        let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = decode_frame(Bytes::from(random));
    }
}
