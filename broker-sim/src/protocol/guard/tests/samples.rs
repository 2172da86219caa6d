//! Populated sample requests, encoded with kafka-protocol's own encoders.
//!
//! Every top-level array (and most nested ones) gets at least one element at
//! every version that carries it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    add_offsets_to_txn_request::AddOffsetsToTxnRequest,
    add_partitions_to_txn_request::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    },
    alter_configs_request::{AlterConfigsRequest, AlterConfigsResource, AlterableConfig},
    api_versions_request::ApiVersionsRequest,
    create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsRequest, CreatePartitionsTopic},
    create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig, CreateTopicsRequest},
    delete_groups_request::DeleteGroupsRequest,
    delete_records_request::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic},
    delete_topics_request::{DeleteTopicState, DeleteTopicsRequest},
    describe_cluster_request::DescribeClusterRequest,
    describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource},
    describe_groups_request::DescribeGroupsRequest,
    describe_producers_request::{DescribeProducersRequest, TopicRequest},
    describe_transactions_request::DescribeTransactionsRequest,
    end_txn_request::EndTxnRequest,
    fetch_request::{FetchPartition, FetchRequest, FetchTopic, ForgottenTopic},
    find_coordinator_request::FindCoordinatorRequest,
    heartbeat_request::HeartbeatRequest,
    incremental_alter_configs_request as incremental,
    init_producer_id_request::InitProducerIdRequest,
    join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol},
    leave_group_request::{LeaveGroupRequest, MemberIdentity},
    list_groups_request::ListGroupsRequest,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic},
    list_transactions_request::ListTransactionsRequest,
    metadata_request::{MetadataRequest, MetadataRequestTopic},
    offset_commit_request::{OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_delete_request::{OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
    offset_fetch_request::{
        OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    },
    offset_for_leader_epoch_request::{OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic},
    produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData},
    sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment},
    txn_offset_commit_request::{TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic},
    BrokerId, GroupId, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes, VersionRange};

/// A static string as `StrBytes`.
fn s(x: &'static str) -> StrBytes {
    StrBytes::from_static_str(x)
}

/// A topic name.
fn topic() -> TopicName {
    TopicName(s("topic-a"))
}

/// A group id.
fn group() -> GroupId {
    GroupId(s("group-a"))
}

/// A transactional id.
fn txn() -> TransactionalId {
    TransactionalId(s("txn-a"))
}

/// Encodes `req` at `version`.
fn enc<R: Encodable>(req: R, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    if let Err(e) = req.encode(&mut buf, version) {
        panic!("encoding {} v{version} failed: {e:#}", std::any::type_name::<R>());
    }
    buf.to_vec()
}

/// A populated request body of `api_key` at `version`.
pub(super) fn sample(api_key: i16, version: i16) -> Vec<u8> {
    let v = version;
    match api_key {
        0 => enc(produce(v), v),
        1 => enc(fetch(v), v),
        2 => enc(
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]),
            v,
        ),
        3 => enc(
            MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic()))])),
            v,
        ),
        8 => enc(
            OffsetCommitRequest::default()
                .with_group_id(group())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_committed_offset(42)])]),
            v,
        ),
        9 => enc(offset_fetch(v), v),
        10 => enc(
            if v <= 3 {
                FindCoordinatorRequest::default().with_key(s("group-a"))
            } else {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("group-a")])
            },
            v,
        ),
        11 => enc(
            JoinGroupRequest::default().with_group_id(group()).with_protocol_type(s("consumer")).with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"meta")),
            ]),
            v,
        ),
        12 => enc(HeartbeatRequest::default().with_group_id(group()).with_member_id(s("m-1")), v),
        13 => enc(
            if v <= 2 {
                LeaveGroupRequest::default().with_group_id(group()).with_member_id(s("m-1"))
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(group())
                    .with_members(vec![MemberIdentity::default().with_member_id(s("m-1"))])
            },
            v,
        ),
        14 => enc(
            SyncGroupRequest::default().with_group_id(group()).with_member_id(s("m-1")).with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(s("m-1"))
                    .with_assignment(Bytes::from_static(b"assignment")),
            ]),
            v,
        ),
        15 => enc(DescribeGroupsRequest::default().with_groups(vec![group()]), v),
        16 => {
            let mut req = ListGroupsRequest::default();
            if v >= 4 {
                req = req.with_states_filter(vec![s("Stable")]);
            }
            if v >= 5 {
                req = req.with_types_filter(vec![s("classic")]);
            }
            enc(req, v)
        }
        18 => {
            let mut req = ApiVersionsRequest::default();
            if v >= 3 {
                req = req.with_client_software_name(s("moldau")).with_client_software_version(s("0.1"));
            }
            enc(req, v)
        }
        19 => enc(
            CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![CreatableTopic::default()
                .with_name(topic())
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![
                    CreatableReplicaAssignment::default().with_broker_ids(vec![BrokerId(1), BrokerId(2)])
                ])
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(Some(s("compact")))])]),
            v,
        ),
        20 => enc(
            if v <= 5 {
                DeleteTopicsRequest::default().with_topic_names(vec![topic()])
            } else {
                DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_name(Some(topic()))])
            },
            v,
        ),
        21 => enc(
            DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![DeleteRecordsPartition::default().with_offset(7)])]),
            v,
        ),
        22 => enc(InitProducerIdRequest::default().with_transactional_id(Some(txn())), v),
        23 => enc(
            OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic())
                .with_partitions(vec![OffsetForLeaderPartition::default()])]),
            v,
        ),
        24 => enc(add_partitions_to_txn(v), v),
        25 => enc(AddOffsetsToTxnRequest::default().with_transactional_id(txn()).with_group_id(group()), v),
        26 => enc(EndTxnRequest::default().with_transactional_id(txn()), v),
        28 => enc(
            TxnOffsetCommitRequest::default().with_transactional_id(txn()).with_group_id(group()).with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()]),
            ]),
            v,
        ),
        32 => enc(
            DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("topic-a"))
                .with_configuration_keys(Some(vec![s("retention.ms")]))]),
            v,
        ),
        33 => enc(
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("topic-a"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))])]),
            v,
        ),
        37 => enc(
            CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic())
                .with_count(2)
                .with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)])
                ]))]),
            v,
        ),
        42 => enc(DeleteGroupsRequest::default().with_groups_names(vec![group()]), v),
        44 => enc(
            incremental::IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("topic-a"))
                    .with_configs(vec![incremental::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000")))]),
            ]),
            v,
        ),
        47 => enc(
            OffsetDeleteRequest::default()
                .with_group_id(group())
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![OffsetDeleteRequestPartition::default()])]),
            v,
        ),
        60 => enc(DescribeClusterRequest::default(), v),
        61 => enc(
            DescribeProducersRequest::default()
                .with_topics(vec![TopicRequest::default().with_name(topic()).with_partition_indexes(vec![0, 1])]),
            v,
        ),
        65 => enc(DescribeTransactionsRequest::default().with_transactional_ids(vec![txn()]), v),
        66 => enc(
            ListTransactionsRequest::default()
                .with_state_filters(vec![s("Ongoing")])
                .with_producer_id_filters(vec![ProducerId(1)]),
            v,
        ),
        _ => panic!("no sample for API key {api_key}"),
    }
}

/// The version range kafka-protocol's request type of `api_key` supports.
pub(super) fn crate_versions(api_key: i16) -> VersionRange {
    match api_key {
        0 => ProduceRequest::VERSIONS,
        1 => FetchRequest::VERSIONS,
        2 => ListOffsetsRequest::VERSIONS,
        3 => MetadataRequest::VERSIONS,
        8 => OffsetCommitRequest::VERSIONS,
        9 => OffsetFetchRequest::VERSIONS,
        10 => FindCoordinatorRequest::VERSIONS,
        11 => JoinGroupRequest::VERSIONS,
        12 => HeartbeatRequest::VERSIONS,
        13 => LeaveGroupRequest::VERSIONS,
        14 => SyncGroupRequest::VERSIONS,
        15 => DescribeGroupsRequest::VERSIONS,
        16 => ListGroupsRequest::VERSIONS,
        18 => ApiVersionsRequest::VERSIONS,
        19 => CreateTopicsRequest::VERSIONS,
        20 => DeleteTopicsRequest::VERSIONS,
        21 => DeleteRecordsRequest::VERSIONS,
        22 => InitProducerIdRequest::VERSIONS,
        23 => OffsetForLeaderEpochRequest::VERSIONS,
        24 => AddPartitionsToTxnRequest::VERSIONS,
        25 => AddOffsetsToTxnRequest::VERSIONS,
        26 => EndTxnRequest::VERSIONS,
        28 => TxnOffsetCommitRequest::VERSIONS,
        32 => DescribeConfigsRequest::VERSIONS,
        33 => AlterConfigsRequest::VERSIONS,
        37 => CreatePartitionsRequest::VERSIONS,
        42 => DeleteGroupsRequest::VERSIONS,
        44 => incremental::IncrementalAlterConfigsRequest::VERSIONS,
        47 => OffsetDeleteRequest::VERSIONS,
        60 => DescribeClusterRequest::VERSIONS,
        61 => DescribeProducersRequest::VERSIONS,
        65 => DescribeTransactionsRequest::VERSIONS,
        66 => ListTransactionsRequest::VERSIONS,
        _ => panic!("no sample for API key {api_key}"),
    }
}

/// A Produce request with one topic and one partition.
fn produce(v: i16) -> ProduceRequest {
    let mut t = TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from_static(b"records")))]);
    if v <= 12 {
        t = t.with_name(topic());
    }
    ProduceRequest::default()
        .with_transactional_id(Some(txn()))
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![t])
}

/// A Fetch request with one topic, one partition and one forgotten topic.
fn fetch(v: i16) -> FetchRequest {
    let mut t = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(5)
        .with_partition_max_bytes(1 << 20)]);
    if v <= 12 {
        t = t.with_topic(topic());
    }
    let mut req = FetchRequest::default().with_max_wait_ms(500).with_topics(vec![t]);
    if v >= 7 {
        let mut f = ForgottenTopic::default().with_partitions(vec![3]);
        if v <= 12 {
            f = f.with_topic(topic());
        }
        req = req.with_forgotten_topics_data(vec![f]);
    }
    if v >= 11 {
        req = req.with_rack_id(s("rack-1"));
    }
    if v >= 12 {
        req = req.with_cluster_id(Some(s("cluster-1")));
    }
    req
}

/// An OffsetFetch request: one topic (v1-7) or one group with one topic (v8+).
fn offset_fetch(v: i16) -> OffsetFetchRequest {
    if v <= 7 {
        OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic())
            .with_partition_indexes(vec![0])]))
    } else {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group())
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic())
                .with_partition_indexes(vec![0])]))])
    }
}

/// An AddPartitionsToTxn request in the v3-and-below or the batched (v4+) shape.
fn add_partitions_to_txn(v: i16) -> AddPartitionsToTxnRequest {
    let t = AddPartitionsToTxnTopic::default().with_name(topic()).with_partitions(vec![0, 1]);
    if v <= 3 {
        AddPartitionsToTxnRequest::default().with_v3_and_below_transactional_id(txn()).with_v3_and_below_topics(vec![t])
    } else {
        AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn())
            .with_topics(vec![t])])
    }
}
