//! Interactive queries across instances (Kafka Streams' `streamsMetadataForStore`): which
//! instance hosts each partition of a store. Each instance advertises its
//! `application.server` in its group consumers' client id (`<id>|<application.server>`); the
//! group's current assignment (DescribeGroups) says which partitions each member consumes,
//! and so which tasks, and which partitions of their stores, it runs.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::topics::TopicNames;
use super::StreamsConfig;
use crate::error::{Error, Result};
use crate::Topology;

/// Separates a consumer's own client id from the `application.server` it advertises.
pub(crate) const SERVER_SEPARATOR: char = '|';

/// The client id of a group consumer: `base`, then the instance's `application.server`.
pub(crate) fn consumer_client_id(base: &str, config: &StreamsConfig) -> String {
    match &config.application_server {
        Some(server) => format!("{base}{SERVER_SEPARATOR}{server}"),
        None => base.to_string(),
    }
}

/// The partitions of a store one member of the group hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHost {
    /// The `application.server` its instance advertises (`None`: it advertises none).
    pub server: Option<String>,
    /// The store's partitions it hosts (its tasks' partitions), sorted.
    pub partitions: Vec<i32>,
}

/// Decodes a consumer-protocol assignment (any version: an `i16` version, then the topics with
/// their partitions; the user data after them is not read) into (topic, partitions).
pub(crate) fn decode_assignment(bytes: &[u8]) -> std::result::Result<Vec<(String, Vec<i32>)>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> std::result::Result<&[u8], String> {
        let end = at.checked_add(n).filter(|&e| e <= bytes.len()).ok_or_else(|| {
            format!("the assignment ends after {} bytes, within a field of {n} bytes at {at}", bytes.len())
        })?;
        let out = &bytes[at..end];
        at = end;
        Ok(out)
    };
    let i16_of = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
    let i32_of = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if bytes.is_empty() {
        return Ok(Vec::new()); // no assignment (the group is rebalancing)
    }
    let _version = i16_of(take(2)?);
    let topics = i32_of(take(4)?);
    let mut out = Vec::with_capacity(usize::try_from(topics).unwrap_or(0).min(1024));
    for _ in 0..topics.max(0) {
        let len = i16_of(take(2)?);
        let len = usize::try_from(len).map_err(|_| format!("a topic name of length {len}"))?;
        let name = std::str::from_utf8(take(len)?).map_err(|e| format!("a topic name is not UTF-8: {e}"))?.to_string();
        let n = i32_of(take(4)?);
        let mut partitions = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(4096));
        for _ in 0..n.max(0) {
            partitions.push(i32_of(take(4)?));
        }
        out.push((name, partitions));
    }
    Ok(out)
}

/// The hosts of `store` from the group members' (client id, assignment bytes).
pub(crate) fn hosts_of(
    topology: &Topology,
    names: &TopicNames,
    store: &str,
    members: &[(String, Vec<u8>)],
) -> Result<Vec<StoreHost>> {
    let sub = (0..topology.subtopology_count())
        .find(|&s| topology.stores_of(s).iter().any(|b| b.name() == store))
        .ok_or_else(|| Error::InvalidTopology(format!("no store named '{store}'")))?;
    let topics: Vec<Arc<str>> =
        topology.source_topics(sub).iter().map(|t| names.physical(&Arc::from(t.as_str()))).collect();
    let mut hosts = Vec::new();
    for (client_id, assignment) in members {
        let assigned = decode_assignment(assignment)
            .map_err(|e| Error::kafka("reading the group's assignment", format!("member {client_id}: {e}")))?;
        let mut partitions: Vec<i32> =
            assigned.into_iter().filter(|(t, _)| topics.iter().any(|s| **s == *t)).flat_map(|(_, p)| p).collect();
        partitions.sort_unstable();
        partitions.dedup();
        if partitions.is_empty() {
            continue;
        }
        let server = client_id.split_once(SERVER_SEPARATOR).map(|(_, s)| s.to_string());
        hosts.push(StoreHost { server, partitions });
    }
    Ok(hosts)
}

/// Asks the cluster for the group's members and their assignments.
pub(crate) fn describe_group(client: &BaseConsumer, group: &str, timeout: Duration) -> Result<Vec<(String, Vec<u8>)>> {
    let list = client.fetch_group_list(Some(group), timeout).map_err(|e| Error::kafka("describing the group", e))?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| (m.client_id().to_string(), m.assignment().map(<[u8]>::to_vec).unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
        b
    }

    #[test]
    fn should_decode_assignments_and_refuse_truncated_ones() {
        let b = assignment(&[("a", &[0, 2]), ("b", &[1])]);
        assert_eq!(decode_assignment(&b).unwrap(), [("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]);
        assert_eq!(decode_assignment(&[]).unwrap(), []);
        for cut in 1..b.len() - 4 {
            assert!(decode_assignment(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = 0i16.to_be_bytes().to_vec();
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_assignment(&huge).unwrap_err().contains("ends after"));
    }
}
