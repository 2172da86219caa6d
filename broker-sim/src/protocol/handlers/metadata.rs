//! Metadata: brokers, topics, partition leaders, epochs, auto-creation.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::sb;
use crate::cluster::{NewTopic, Topic};
use crate::protocol::{acl, codes, Ctx};

pub(super) fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let core = ctx.core;
    let brokers = core
        .brokers
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(sb(&b.host))
                .with_port(i32::from(b.port))
        })
        .collect();
    let topic_ops = acl::if_asked(ctx.version >= 8 && req.include_topic_authorized_operations, acl::TOPIC);
    let cluster_ops =
        acl::if_asked((8..=10).contains(&ctx.version) && req.include_cluster_authorized_operations, acl::CLUSTER);
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let mut topics = Vec::new();
    if all {
        topics.extend(core.topics().iter().map(|t| describe_topic(t, topic_ops)));
    } else {
        let auto = core.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
        for rt in req.topics.unwrap_or_default() {
            let found = match &rt.name {
                Some(name) => core.topic(name),
                None => core.topic_by_id(rt.topic_id),
            };
            match (found, rt.name) {
                (Some(t), _) => topics.push(describe_topic(&t, topic_ops)),
                (None, None) => topics.push(
                    MetadataResponseTopic::default()
                        .with_error_code(codes::UNKNOWN_TOPIC_ID)
                        .with_topic_id(rt.topic_id),
                ),
                (None, Some(name)) => {
                    let created = if auto {
                        core.create_topic(NewTopic {
                            name: name.to_string(),
                            partitions: -1,
                            replication_factor: -1,
                            ..Default::default()
                        })
                        .map_err(|e| e.code)
                    } else {
                        Err(codes::UNKNOWN_TOPIC_OR_PARTITION)
                    };
                    match created {
                        Ok(t) => topics.push(describe_topic(&t, topic_ops)),
                        Err(code) if code == codes::TOPIC_ALREADY_EXISTS => {
                            if let Some(t) = core.topic(&name) {
                                topics.push(describe_topic(&t, topic_ops));
                            }
                        }
                        Err(code) => {
                            topics.push(MetadataResponseTopic::default().with_error_code(code).with_name(Some(name)))
                        }
                    }
                }
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(sb(&core.cluster_id)))
        .with_controller_id(BrokerId(core.controller_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}

fn describe_topic(t: &Topic, authorized_operations: i32) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            let replicas: Vec<BrokerId> = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_isr_nodes(replicas.clone())
                .with_replica_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(&t.name))))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations)
}
