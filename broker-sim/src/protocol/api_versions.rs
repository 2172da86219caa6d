//! What broker-sim advertises, and the ApiVersions answers.
//!
//! Only APIs that are implemented and correct are listed: clients turn features on from this
//! list (see `shared/reference/kafka-protocol.md` §2 and §4). Topic-id versions (Fetch 13+,
//! Produce 13) are left out, and so are KIP-890 "transaction version 2" versions: InitProducerId
//! 5+, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn/TxnOffsetCommit 4+ (which add
//! TRANSACTION_ABORTABLE and the per-transaction epoch bump).

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use super::codes;

/// (API key, min version, max version) of every API served.
pub(crate) const ADVERTISED: &[(i16, i16, i16)] = &[
    (0, 3, 11), // Produce
    (1, 4, 12), // Fetch
    (2, 1, 7),  // ListOffsets
    (3, 0, 12), // Metadata
    (8, 2, 9),  // OffsetCommit
    (9, 1, 9),  // OffsetFetch
    (10, 0, 4), // FindCoordinator
    (11, 0, 7), // JoinGroup
    (12, 0, 4), // Heartbeat
    (13, 0, 5), // LeaveGroup
    (14, 0, 5), // SyncGroup
    (15, 0, 5), // DescribeGroups
    (16, 0, 5), // ListGroups
    (18, 0, 3), // ApiVersions
    (19, 2, 7), // CreateTopics
    (20, 1, 6), // DeleteTopics
    (21, 0, 2), // DeleteRecords
    (22, 0, 4), // InitProducerId
    (23, 2, 4), // OffsetForLeaderEpoch
    (24, 0, 3), // AddPartitionsToTxn
    (25, 0, 3), // AddOffsetsToTxn
    (26, 0, 3), // EndTxn
    (28, 0, 3), // TxnOffsetCommit
    (32, 1, 4), // DescribeConfigs
    (33, 0, 2), // AlterConfigs
    (37, 0, 3), // CreatePartitions
    (42, 0, 2), // DeleteGroups
    (44, 0, 1), // IncrementalAlterConfigs
    (47, 0, 0), // OffsetDelete
    (60, 0, 1), // DescribeCluster
];

/// Supported version range of `key`, if served.
pub(crate) fn advertised(key: i16) -> Option<(i16, i16)> {
    ADVERTISED.iter().find(|(k, ..)| *k == key).map(|(_, lo, hi)| (*lo, *hi))
}

/// The ApiVersions response body.
pub(crate) fn response() -> ApiVersionsResponse {
    let keys = ADVERTISED
        .iter()
        .map(|(k, lo, hi)| ApiVersion::default().with_api_key(*k).with_min_version(*lo).with_max_version(*hi))
        .collect();
    ApiVersionsResponse::default().with_error_code(codes::NONE).with_api_keys(keys)
}

/// For an ApiVersions request newer than we serve: a v0-format UNSUPPORTED_VERSION response
/// listing our ranges, without parsing the body (KIP-511). `None` if the version is served.
pub(crate) fn unsupported_version_response(version: i16, correlation_id: i32) -> Option<BytesMut> {
    let (lo, hi) = advertised(18)?;
    if version >= lo && version <= hi {
        return None;
    }
    let mut out = BytesMut::with_capacity(16 + ADVERTISED.len() * 6);
    out.put_i32(0);
    out.put_i32(correlation_id);
    out.put_i16(codes::UNSUPPORTED_VERSION);
    out.put_i32(ADVERTISED.len() as i32);
    for (k, lo, hi) in ADVERTISED {
        out.put_i16(*k);
        out.put_i16(*lo);
        out.put_i16(*hi);
    }
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Some(out)
}
