//! CreateTopics, DeleteTopics, CreatePartitions, DescribeCluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse, TopicName,
};

use super::sb;
use crate::cluster::NewTopic;
use crate::config::{self, TOPIC_CONFIGS};
use crate::protocol::{acl, codes, Ctx};

pub(super) fn create_topics(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let core = ctx.core;
    let mut seen = BTreeMap::new();
    for t in &req.topics {
        *seen.entry(t.name.to_string()).or_insert(0) += 1;
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let mut r = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            if seen.get(&name).copied().unwrap_or(0) > 1 {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message = Some(sb(&format!("topic '{name}' appears more than once in the request")));
                return r;
            }
            let mut assignment: Vec<(i32, Vec<i32>)> =
                t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
            assignment.sort_by_key(|(i, _)| *i);
            if assignment.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
                r.error_code = codes::INVALID_REPLICA_ASSIGNMENT;
                r.error_message = Some(sb("replica assignment partitions must be 0..n without gaps"));
                return r;
            }
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(v) = &c.value {
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
            let new = NewTopic {
                name: name.clone(),
                partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                assignment: assignment.into_iter().map(|(_, b)| b).collect(),
                configs,
            };
            let outcome = if req.validate_only {
                core.check_new_topic(&new).map(|a| (a.len() as i32, a.first().map_or(0, Vec::len) as i16, None))
            } else {
                core.create_topic(new)
                    .map(|t| (t.partitions.len() as i32, t.partitions[0].replicas.len() as i16, Some(t)))
            };
            match outcome {
                Ok((partitions, rf, topic)) => {
                    r.num_partitions = partitions;
                    r.replication_factor = rf;
                    if let Some(topic) = topic {
                        r.topic_id = topic.id;
                        r.configs = Some(core.with_view(Some(ctx.node_id()), |view| {
                            TOPIC_CONFIGS
                                .iter()
                                .map(|d| {
                                    let (v, src) = config::effective(view, &topic.configs, d.name);
                                    CreatableTopicConfigs::default()
                                        .with_name(sb(d.name))
                                        .with_value(Some(sb(&v)))
                                        .with_config_source(src as i8)
                                })
                                .collect()
                        }));
                    }
                }
                Err(e) => {
                    r.error_code = e.code;
                    r.error_message = Some(sb(&e.message));
                }
            }
            r
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

pub(super) fn delete_topics(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let core = ctx.core;
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let mut r = DeletableTopicResult::default().with_name(name.clone()).with_topic_id(id);
            let name = match name {
                Some(n) => Some(n.to_string()),
                None => core.topic_by_id(id).map(|t| t.name.clone()),
            };
            let Some(name) = name else {
                r.error_code = codes::UNKNOWN_TOPIC_ID;
                r.error_message = Some(sb("no topic with this id"));
                return r;
            };
            match core.delete_topic(&name) {
                Ok(id) => {
                    r.topic_id = id;
                    r.name = Some(TopicName(sb(&name)));
                }
                Err(e) => {
                    r.error_code = e.code;
                    r.error_message = Some(sb(&e.message));
                }
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) fn create_partitions(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let assignment =
                t.assignments.map(|a| a.into_iter().map(|x| x.broker_ids.iter().map(|b| b.0).collect()).collect());
            if let Err(e) = ctx.core.create_partitions(&t.name, t.count, assignment, req.validate_only) {
                r.error_code = e.code;
                r.error_message = Some(sb(&e.message));
            }
            r
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

pub(super) fn describe_cluster(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let core = ctx.core;
    if req.endpoint_type != 1 {
        return DescribeClusterResponse::default()
            .with_error_code(codes::UNSUPPORTED_VERSION)
            .with_error_message(Some(sb("only broker endpoints (type 1) are served")))
            .with_endpoint_type(req.endpoint_type);
    }
    let brokers = core
        .brokers
        .iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(sb(&b.host))
                .with_port(i32::from(b.port))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(sb(&core.cluster_id))
        .with_controller_id(BrokerId(core.controller_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(acl::if_asked(req.include_cluster_authorized_operations, acl::CLUSTER))
}
