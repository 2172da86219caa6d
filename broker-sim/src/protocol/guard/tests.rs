//! Tests of the request guard against kafka-protocol's own encoders and decoders.

mod samples;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};

use super::schema::{Kind, StructDef, APIS};
use super::{check_request_body, walk_request, GuardError, Trace};

/// The request APIs the guard must cover.
const REQUIRED_APIS: [i16; 33] = [
    0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28, 32, 33, 37, 42, 44, 47, 60,
    61, 65, 66,
];

/// Every (API key, version) pair the schema covers.
fn combos() -> Vec<(i16, i16)> {
    APIS.iter().flat_map(|api| (api.min_version..=api.max_version).map(move |v| (api.key, v))).collect()
}

/// Decodes `body` with kafka-protocol; returns the request and how many bytes it left unread.
fn decode(api_key: i16, version: i16, body: &[u8]) -> Result<(RequestKind, usize), String> {
    let key = ApiKey::try_from(api_key).map_err(|()| format!("unknown API key {api_key}"))?;
    let mut bytes = Bytes::copy_from_slice(body);
    let req = RequestKind::decode(key, &mut bytes, version).map_err(|e| format!("{e:#}"))?;
    Ok((req, bytes.len()))
}

/// Runs the guard and, when it accepts, kafka-protocol's decoder: neither may
/// panic, and an accepted body must never make the decoder allocate absurdly.
fn guard_then_decode(api_key: i16, version: i16, body: &[u8]) -> Result<(), GuardError> {
    let verdict = check_request_body(api_key, version, body);
    if verdict.is_ok() {
        let _ = decode(api_key, version, body);
    }
    verdict
}

/// Records every length prefix the walker reads.
#[derive(Default)]
struct Prefixes(Vec<(&'static str, usize, usize, bool)>);

impl Trace for Prefixes {
    fn length_prefix(&mut self, field: &'static str, offset: usize, width: usize, is_array: bool) {
        self.0.push((field, offset, width, is_array));
    }
}

/// A tiny xorshift64 generator, so that the tests need no `rand`.
struct XorShift(u64);

impl XorShift {
    /// The next pseudo-random value.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A pseudo-random byte.
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Appends an unsigned varint.
fn put_uvarint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a non-null length prefix of a string (`i16`), bytes or array (`i32`).
fn put_len(out: &mut Vec<u8>, flexible: bool, short: bool, len: usize) {
    if flexible {
        put_uvarint(out, len as u32 + 1);
    } else if short {
        out.extend_from_slice(&(len as i16).to_be_bytes());
    } else {
        out.extend_from_slice(&(len as i32).to_be_bytes());
    }
}

/// Appends a random but well-formed value of `kind` (never null).
fn synth_kind(kind: &Kind, version: i16, flexible: bool, tags: bool, rng: &mut XorShift, out: &mut Vec<u8>) {
    let fixed = |out: &mut Vec<u8>, rng: &mut XorShift, n: usize| {
        out.extend((0..n).map(|_| rng.byte()));
    };
    match kind {
        Kind::Bool => out.push(rng.byte() & 1),
        Kind::I8 => fixed(out, rng, 1),
        Kind::I16 | Kind::U16 => fixed(out, rng, 2),
        Kind::I32 | Kind::U32 => fixed(out, rng, 4),
        Kind::I64 | Kind::F64 => fixed(out, rng, 8),
        Kind::Uuid => fixed(out, rng, 16),
        Kind::UVarInt => put_uvarint(out, rng.next() as u32),
        Kind::String => {
            let len = rng.below(6) as usize;
            put_len(out, flexible, true, len);
            out.extend((0..len).map(|_| b'a' + (rng.byte() % 26)));
        }
        Kind::Bytes => {
            let len = rng.below(6) as usize;
            put_len(out, flexible, false, len);
            fixed(out, rng, len);
        }
        Kind::Array(elem) => {
            let n = rng.below(4) as usize;
            put_len(out, flexible, false, n);
            for _ in 0..n {
                synth_kind(elem, version, flexible, tags, rng, out);
            }
        }
        Kind::StructArray(def) => {
            let n = rng.below(3) as usize;
            put_len(out, flexible, false, n);
            for _ in 0..n {
                synth_struct(def, version, tags, rng, out);
            }
        }
        Kind::Struct(def) => synth_struct(def, version, tags, rng, out),
        Kind::OptionStruct(def) => {
            out.push(1);
            synth_struct(def, version, tags, rng, out);
        }
    }
}

/// Appends a random but well-formed `def` struct; with `tags`, known tagged
/// fields (and an unknown one) are included at random.
fn synth_struct(def: &StructDef, version: i16, tags: bool, rng: &mut XorShift, out: &mut Vec<u8>) {
    let flexible = version >= def.flexible_from;
    let present = |f: &&super::schema::Field| f.min <= version && version <= f.max;
    for field in def.fields.iter().filter(present).filter(|f| f.tag.is_none()) {
        synth_kind(&field.kind, version, flexible, tags, rng, out);
    }
    if !flexible {
        return;
    }
    let mut section: Vec<(u32, Vec<u8>)> = Vec::new();
    if tags {
        for field in def.fields.iter().filter(present) {
            if let (Some(tag), true) = (field.tag, rng.below(2) == 0) {
                let mut value = Vec::new();
                synth_kind(&field.kind, version, true, tags, rng, &mut value);
                section.push((tag, value));
            }
        }
        if rng.below(3) == 0 {
            section.push((1000, vec![rng.byte(), rng.byte()]));
        }
    }
    put_uvarint(out, section.len() as u32);
    for (tag, value) in section {
        put_uvarint(out, tag);
        put_uvarint(out, value.len() as u32);
        out.extend_from_slice(&value);
    }
}

/// A random well-formed body of `api_key` at `version`.
fn synth_body(api_key: i16, version: i16, tags: bool, rng: &mut XorShift) -> Vec<u8> {
    let api = APIS.iter().find(|a| a.key == api_key).expect("API in schema");
    let mut out = Vec::new();
    synth_struct(api.body, version, tags, rng, &mut out);
    out
}

/// The schema lists every required API with exactly the versions kafka-protocol decodes.
#[test]
fn should_cover_every_required_api_and_every_decodable_version() {
    for key in REQUIRED_APIS {
        assert!(APIS.iter().any(|a| a.key == key), "API {key} is missing from the schema");
    }
    assert_eq!(APIS.len(), REQUIRED_APIS.len());
    for api in APIS {
        let range = samples::crate_versions(api.key);
        assert_eq!(
            (api.min_version, api.max_version),
            (range.min, range.max),
            "{} versions differ from kafka-protocol's request type",
            api.name
        );
        assert!(ApiKey::try_from(api.key).is_ok(), "{}", api.name);
    }
    eprintln!("guard schema covers {} API/version combinations", combos().len());
}

/// (a) Requests encoded by kafka-protocol pass, and the walker covers exactly their bytes.
#[test]
fn should_accept_populated_requests_at_every_version() {
    let mut tested = 0;
    for (key, version) in combos() {
        let body = samples::sample(key, version);
        assert_eq!(check_request_body(key, version, &body), Ok(()), "API {key} v{version}");
        // The schema must cover exactly the bytes kafka-protocol wrote ...
        let walked = walk_request(key, version, &body, &mut Prefixes::default());
        assert_eq!(walked, Ok(body.len()), "API {key} v{version}: walker length");
        // ... and kafka-protocol must read exactly those bytes back.
        let (req, left) = decode(key, version, &body).unwrap_or_else(|e| panic!("{key} v{version}: {e}"));
        assert_eq!(left, 0, "API {key} v{version}: decoder left bytes");
        let mut again = BytesMut::new();
        req.encode(&mut again, version).expect("re-encode");
        assert_eq!(&again[..], &body[..], "API {key} v{version}: round trip");
        tested += 1;
    }
    eprintln!("accepted populated requests for {tested} API/version combinations");
    assert!(tested >= 190, "only {tested} combinations tested");
}

/// Bodies synthesized from the schema (nested arrays, tagged fields) decode to the last byte.
#[test]
fn should_agree_with_kafka_protocol_on_schema_synthesized_requests() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for (key, version) in combos() {
        for round in 0..40 {
            let tags = round % 2 == 1;
            let body = synth_body(key, version, tags, &mut rng);
            let walked = walk_request(key, version, &body, &mut Prefixes::default());
            assert_eq!(walked, Ok(body.len()), "API {key} v{version}: {body:02x?}");
            let (req, left) =
                decode(key, version, &body).unwrap_or_else(|e| panic!("API {key} v{version}: {e}: {body:02x?}"));
            assert_eq!(left, 0, "API {key} v{version}: decoder stopped early: {body:02x?}");
            if !tags {
                let mut again = BytesMut::new();
                req.encode(&mut again, version).expect("re-encode");
                assert_eq!(&again[..], &body[..], "API {key} v{version}: round trip");
            }
        }
    }
}

/// (b) Every prefix of a valid body is handled without panicking, by guard and decoder.
#[test]
fn should_never_panic_on_truncated_bodies() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for (key, version) in combos() {
        let bodies = [samples::sample(key, version), synth_body(key, version, true, &mut rng)];
        for body in bodies {
            for len in 0..body.len() {
                let prefix = &body[..len];
                // Either verdict is fine; an accepted prefix is decoded too.
                let _ = guard_then_decode(key, version, prefix);
            }
        }
    }
}

/// The first array length prefix the walker reads in `body`.
fn first_array_prefix(key: i16, version: i16, body: &[u8]) -> Option<(&'static str, usize, usize)> {
    let mut trace = Prefixes::default();
    walk_request(key, version, body, &mut trace).expect("valid sample");
    trace.0.into_iter().find(|p| p.3).map(|(name, offset, width, _)| (name, offset, width))
}

/// (c) An `i32` array length patched to `0x7fffffff` is rejected.
#[test]
fn should_reject_when_array_length_exceeds_remaining() {
    let mut patched = 0;
    for (key, version) in combos() {
        let body = samples::sample(key, version);
        let Some((field, offset, width)) = first_array_prefix(key, version, &body) else {
            continue;
        };
        if width != 4 {
            continue;
        }
        let mut evil = body.clone();
        evil[offset..offset + 4].copy_from_slice(&0x7fff_ffff_i32.to_be_bytes());
        match check_request_body(key, version, &evil) {
            Err(GuardError::LengthTooLarge { field: f, claimed, .. }) => {
                assert_eq!((f, claimed), (field, 0x7fff_ffff), "API {key} v{version}");
            }
            other => panic!("API {key} v{version}: expected LengthTooLarge, got {other:?}"),
        }
        patched += 1;
    }
    eprintln!("patched {patched} non-compact array lengths");
    assert!(patched >= 80, "only {patched} non-compact bodies patched");
}

/// (c) A compact array length patched to the varint `0xffffffff` is rejected.
#[test]
fn should_reject_when_compact_array_length_is_u32_max() {
    let mut patched = 0;
    for (key, version) in combos() {
        let body = samples::sample(key, version);
        let Some((field, offset, width)) = first_array_prefix(key, version, &body) else {
            continue;
        };
        if width == 4 {
            continue;
        }
        let mut evil = body[..offset].to_vec();
        put_uvarint(&mut evil, u32::MAX);
        assert_eq!(&evil[offset..], &[0xff, 0xff, 0xff, 0xff, 0x0f]);
        evil.extend_from_slice(&body[offset + width..]);
        match check_request_body(key, version, &evil) {
            Err(GuardError::LengthTooLarge { field: f, claimed, .. }) => {
                assert_eq!((f, claimed), (field, u64::from(u32::MAX - 1)), "API {key} v{version}");
            }
            other => panic!("API {key} v{version}: expected LengthTooLarge, got {other:?}"),
        }
        patched += 1;
    }
    eprintln!("patched {patched} compact array lengths");
    assert!(patched >= 65, "only {patched} compact bodies patched");
}

/// (d) Random and mutated bodies never panic; accepted ones are decoded too.
#[test]
fn should_survive_random_and_mutated_bytes() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for (key, version) in combos() {
        for _ in 0..150 {
            let len = rng.below(64) as usize;
            let body: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            let _ = guard_then_decode(key, version, &body);
        }
        let sample = samples::sample(key, version);
        for _ in 0..150 {
            let mut body = sample.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(body.len().max(1) as u64) as usize;
                if let Some(b) = body.get_mut(i) {
                    *b = match rng.below(3) {
                        0 => 0xff,
                        1 => 0x7f,
                        _ => rng.byte(),
                    };
                }
            }
            let _ = guard_then_decode(key, version, &body);
        }
    }
}

/// Fetch v15 body with empty arrays and an empty rack id, followed by `tags`.
fn fetch_v15(tags: &[u8]) -> Vec<u8> {
    // max_wait_ms, min_bytes, max_bytes, isolation_level, session_id, session_epoch
    let mut body = vec![0u8; 4 + 4 + 4 + 1 + 4 + 4];
    // topics = [], forgotten_topics_data = [], rack_id = ""
    body.extend_from_slice(&[1, 1, 1]);
    body.extend_from_slice(tags);
    body
}

/// Known tagged fields are walked inside, and must fill, their declared size.
#[test]
fn should_walk_known_tagged_fields_inside_their_declared_size() {
    // cluster_id (tag 0) = "c", exactly filling its 2 bytes.
    let ok = fetch_v15(&[1, 0, 2, 2, b'c']);
    assert_eq!(check_request_body(1, 15, &ok), Ok(()));
    assert!(decode(1, 15, &ok).is_ok());
    // replica_state (tag 1): replica_id, replica_epoch and an empty tag section.
    let mut state = vec![1, 1, 13];
    state.extend_from_slice(&[0; 13]);
    assert_eq!(check_request_body(1, 15, &fetch_v15(&state)), Ok(()));
    // A known field shorter than its declared size would desynchronise
    // kafka-protocol (it ignores the size of known fields).
    assert_eq!(
        check_request_body(1, 15, &fetch_v15(&[1, 0, 3, 2, b'c', 0])),
        Err(GuardError::TrailingBytes { count: 1 })
    );
    // A string inside a known tagged field is bounded by the field's window.
    assert_eq!(
        check_request_body(1, 15, &fetch_v15(&[1, 0, 1, 5, b'a', b'b', b'c', b'd'])),
        Err(GuardError::LengthTooLarge { field: "FetchRequest.cluster_id", claimed: 4, remaining: 0 })
    );
}

/// Tagged-field sizes and counts are bounded by the bytes remaining.
#[test]
fn should_reject_when_tagged_field_size_exceeds_remaining() {
    assert_eq!(
        check_request_body(1, 15, &fetch_v15(&[1, 9, 0x7f, 0, 0, 0])),
        Err(GuardError::LengthTooLarge { field: "FetchRequest (tagged fields)", claimed: 127, remaining: 3 })
    );
    // An unknown tag that fits is skipped.
    assert_eq!(check_request_body(1, 15, &fetch_v15(&[1, 9, 2, 0xff, 0xff])), Ok(()));
    // A tag count that cannot fit.
    assert!(matches!(
        check_request_body(1, 15, &fetch_v15(&[0xff, 0xff, 0xff, 0xff, 0x0f])),
        Err(GuardError::LengthTooLarge { claimed: 0xffff_ffff, .. })
    ));
}

/// A varint with a continuation bit in its fifth byte is rejected.
#[test]
fn should_reject_when_varint_is_longer_than_five_bytes() {
    // Metadata v9: the compact topics array length never terminates.
    let body = [0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 0, 0, 0];
    assert!(matches!(
        check_request_body(3, 9, &body),
        Err(GuardError::LengthTooLarge { field: "MetadataRequest.topics", claimed: u64::MAX, .. })
    ));
}

/// Null lengths (`-1`, compact `0`) are left to kafka-protocol.
#[test]
fn should_accept_null_lengths_everywhere() {
    // Metadata v1: topics = null (i32 -1).
    assert_eq!(check_request_body(3, 1, &[0xff, 0xff, 0xff, 0xff]), Ok(()));
    // Metadata v9: topics = null (compact 0), three booleans, no tags.
    assert_eq!(walk_request(3, 9, &[0, 1, 0, 0, 0], &mut Prefixes::default()), Ok(5));
    // Produce v3: transactional_id = null (i16 -1), acks, timeout, topics = [].
    let body = [0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(check_request_body(0, 3, &body), Ok(()));
}

/// Negative lengths other than `-1` are rejected.
#[test]
fn should_reject_negative_lengths_other_than_null() {
    assert_eq!(
        check_request_body(3, 1, &[0xff, 0xff, 0xff, 0xfe]),
        Err(GuardError::NegativeLength { field: "MetadataRequest.topics" })
    );
    assert_eq!(
        check_request_body(0, 3, &[0x80, 0x00]),
        Err(GuardError::NegativeLength { field: "ProduceRequest.transactional_id" })
    );
}

/// A string longer than the rest of the body is rejected.
#[test]
fn should_reject_when_string_length_exceeds_remaining() {
    assert_eq!(
        check_request_body(0, 3, &[0x7f, 0xff, b'a', b'b']),
        Err(GuardError::LengthTooLarge { field: "ProduceRequest.transactional_id", claimed: 0x7fff, remaining: 2 })
    );
}

/// Array counts are bounded by the minimum wire size of one element.
#[test]
fn should_bound_arrays_by_their_minimum_element_size() {
    // Fetch v4: replica_id, max_wait_ms, min_bytes, max_bytes, isolation_level,
    // then 10 topics in 10 bytes although a v4 topic takes at least 6 bytes.
    let mut body = vec![0u8; 4 * 4 + 1];
    body.extend_from_slice(&10_i32.to_be_bytes());
    body.extend_from_slice(&[0; 10]);
    assert_eq!(
        check_request_body(1, 4, &body),
        Err(GuardError::LengthTooLarge { field: "FetchRequest.topics", claimed: 10, remaining: 10 })
    );
}

/// Unknown API keys and versions kafka-protocol cannot decode are rejected.
#[test]
fn should_reject_unknown_apis_and_undecodable_versions() {
    for (key, version) in [(17, 0), (1000, 0), (-1, 0), (0, 2), (0, 14), (8, 10), (9, 10), (22, 6)] {
        assert_eq!(
            check_request_body(key, version, &[]),
            Err(GuardError::UnknownApi { api_key: key }),
            "API {key} v{version}"
        );
    }
}

/// Bytes after the body are tolerated, as kafka-protocol tolerates them.
#[test]
fn should_ignore_trailing_bytes_like_kafka_protocol() {
    for (key, version) in combos() {
        let mut body = samples::sample(key, version);
        body.extend_from_slice(&[0xff; 7]);
        assert_eq!(check_request_body(key, version, &body), Ok(()), "API {key} v{version}");
        let (_, left) = decode(key, version, &body).expect("decodes");
        assert_eq!(left, 7);
    }
}

/// Truncation names the field that could not be read.
#[test]
fn should_report_truncation_with_the_field_name() {
    assert_eq!(check_request_body(0, 3, &[0xff, 0xff, 0]), Err(GuardError::Truncated { field: "ProduceRequest.acks" }));
}

/// Every error renders a readable message.
#[test]
fn should_render_clear_messages() {
    let cases = [
        (GuardError::Truncated { field: "A.b" }, "request body ends inside field A.b"),
        (
            GuardError::LengthTooLarge { field: "A.b", claimed: 9, remaining: 2 },
            "field A.b claims length 9 but only 2 bytes remain",
        ),
        (
            GuardError::LengthTooLarge { field: "A.b", claimed: u64::MAX, remaining: 2 },
            "field A.b has a varint longer than five bytes (2 bytes remaining)",
        ),
        (GuardError::NegativeLength { field: "A.b" }, "field A.b has a negative length"),
        (GuardError::UnknownApi { api_key: 17 }, "API key 17 at this version is not covered by the request guard"),
        (GuardError::TrailingBytes { count: 3 }, "3 byte(s) left over inside a tagged field's declared size"),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}
