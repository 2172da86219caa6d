//! Malformed input on the wire: each case gets an error code or a closed connection, and the
//! broker keeps serving every other client.

use std::io::{Read, Write};
use std::net::TcpStream;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest};
use moldau_broker_sim::Cluster;
use moldau_tests::{init_logging, must_create_topic};

use crate::raw::{connect, read_frame, record_batch, request, send_frame, CORRELATION_ID};

/// A healthy ApiVersions round trip on `s`.
fn must_answer_api_versions(s: &mut TcpStream) {
    send_frame(s, &request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()));
    let resp = read_frame(s).expect("the broker still answers");
    assert_eq!(&resp[0..4], &CORRELATION_ID.to_be_bytes(), "correlation id");
    assert_eq!(&resp[4..6], &0i16.to_be_bytes(), "error code NONE");
}

/// Sends a bad frame on a fresh connection and asserts the broker closes it, while an existing
/// connection and new connections keep working.
fn must_close_and_keep_serving(cluster: &Cluster, healthy: &mut TcpStream, frame: &[u8], what: &str) {
    let mut bad = connect(cluster);
    bad.write_all(frame).expect("write bad frame");
    let mut buf = [0u8; 64];
    match bad.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{what}: expected the connection to close, got {n} bytes"),
    }
    must_answer_api_versions(healthy);
    must_answer_api_versions(&mut connect(cluster));
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn should_close_only_the_offending_connection_when_frames_are_malformed() {
    init_logging();
    let cluster = moldau_tests::cluster_builder().start().unwrap();
    let mut healthy = connect(&cluster);
    must_answer_api_versions(&mut healthy);

    // A frame shorter than a request header.
    must_close_and_keep_serving(&cluster, &mut healthy, &framed(&[0, 3, 0]), "short header");
    // A truncated frame: claims 100 bytes, sends 10, then half-closes.
    {
        let mut bad = connect(&cluster);
        let mut f = 100i32.to_be_bytes().to_vec();
        f.extend_from_slice(&[0u8; 10]);
        bad.write_all(&f).unwrap();
        bad.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(bad.read(&mut buf), Ok(0) | Err(_)), "truncated frame closes the connection");
        must_answer_api_versions(&mut healthy);
    }
    // A frame over socket.request.max.bytes (100 MiB): refused before any allocation.
    must_close_and_keep_serving(&cluster, &mut healthy, &(200 * 1024 * 1024i32).to_be_bytes(), "oversized frame");
    // A negative frame size.
    must_close_and_keep_serving(&cluster, &mut healthy, &(-5i32).to_be_bytes(), "negative size");
    // Unknown API key and unsupported version.
    let mut unknown = request(ApiKey::Metadata, 1, &MetadataRequest::default());
    unknown[0..2].copy_from_slice(&999i16.to_be_bytes());
    must_close_and_keep_serving(&cluster, &mut healthy, &framed(&unknown), "unknown API key");
    let mut newer = request(ApiKey::Metadata, 1, &MetadataRequest::default());
    newer[2..4].copy_from_slice(&99i16.to_be_bytes());
    must_close_and_keep_serving(&cluster, &mut healthy, &framed(&newer), "unsupported version");
    // An array length far larger than the bytes left (Metadata v1 topics = 0x7fffffff).
    let mut huge = request(ApiKey::Metadata, 1, &MetadataRequest::default().with_topics(Some(vec![])));
    let n = huge.len();
    huge[n - 4..].copy_from_slice(&0x7fff_ffffi32.to_be_bytes());
    must_close_and_keep_serving(&cluster, &mut healthy, &framed(&huge), "array length beyond the frame");
    // Garbage after a valid header.
    let mut garbage = request(ApiKey::Metadata, 9, &MetadataRequest::default());
    garbage.truncate(14);
    garbage.extend_from_slice(&[0xff; 7]);
    must_close_and_keep_serving(&cluster, &mut healthy, &framed(&garbage), "garbage body");
    cluster.shutdown();
}

#[test]
fn should_answer_v0_unsupported_version_when_api_versions_is_too_new() {
    let cluster = moldau_tests::cluster_builder().start().unwrap();
    let mut s = connect(&cluster);
    let mut req = request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    req[2..4].copy_from_slice(&42i16.to_be_bytes());
    send_frame(&mut s, &req);
    let resp = read_frame(&mut s).expect("a v0 response");
    assert_eq!(&resp[0..4], &7i32.to_be_bytes());
    assert_eq!(i16::from_be_bytes([resp[4], resp[5]]), 35, "UNSUPPORTED_VERSION");
    let count = i32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
    assert!(count >= 20, "the v0 body lists the supported APIs ({count})");
    // The connection stays usable for the client's retry.
    must_answer_api_versions(&mut s);
    cluster.shutdown();
}

fn batch(n: usize, value_len: usize) -> Vec<u8> {
    record_batch(n, value_len, None)
}

fn produce(s: &mut TcpStream, records: Vec<u8>) -> (i16, i64) {
    crate::raw::produce(s, "t", 1, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_refuse_corrupt_batches_with_error_codes_and_keep_good_data_flowing() {
    init_logging();
    let cluster = moldau_tests::cluster_builder().config("message.max.bytes", "10000").start().unwrap();
    must_create_topic(cluster.bootstrap_servers(), "t", 1, 1).await;
    let mut s = connect(&cluster);
    assert_eq!(produce(&mut s, batch(3, 10)), (0, 0));

    let mut bad_crc = batch(3, 10);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    assert_eq!(produce(&mut s, bad_crc).0, 2, "CORRUPT_MESSAGE for a bad CRC");

    let mut bad_magic = batch(1, 10);
    bad_magic[16] = 1;
    assert_eq!(produce(&mut s, bad_magic).0, 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT for magic 1");

    let mut truncated = batch(3, 10);
    truncated.truncate(truncated.len() - 3);
    assert_eq!(produce(&mut s, truncated).0, 2, "CORRUPT_MESSAGE for a truncated batch");

    assert_eq!(produce(&mut s, batch(20, 1000)).0, 10, "MESSAGE_TOO_LARGE over max.message.bytes");

    // Nothing bad was appended; good data still lands right after the first batch.
    assert_eq!(produce(&mut s, batch(2, 10)), (0, 3));
    cluster.shutdown();
}
