//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers (the
//! cluster-wide default, resource name "", or one broker by node id). Every known config is
//! reported with its value, source, synonyms and type; broker keys that cannot change at run
//! time are marked read-only.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::sb;
use crate::config::dynamic::{self, Entity};
use crate::config::{self, ConfigSource, BROKER_KEYS, TOPIC_CONFIGS};
use crate::protocol::{codes, Ctx};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub(super) fn describe(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let core = ctx.core;
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let wanted =
                |k: &str| res.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|w| w.as_str() == k));
            let doc = req.include_documentation;
            match res.resource_type {
                TOPIC => {
                    let Some(topic) = core.topic(&res.resource_name) else {
                        out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message = Some(sb(&format!("topic '{}' does not exist", res.resource_name.as_str())));
                        return out;
                    };
                    out.configs = core.with_view(Some(ctx.node_id()), |view| {
                        TOPIC_CONFIGS
                            .iter()
                            .filter(|d| wanted(d.name))
                            .map(|d| {
                                let (value, source) = config::effective(view, &topic.configs, d.name);
                                let mut synonyms = Vec::new();
                                if req.include_synonyms {
                                    if source == ConfigSource::Topic {
                                        synonyms.push(synonym(d.name, &value, ConfigSource::Topic));
                                    }
                                    for (v, src) in view.layers(d.broker_synonym) {
                                        synonyms.push(synonym(d.broker_synonym, &v, src));
                                    }
                                    synonyms.push(synonym(d.broker_synonym, d.default, ConfigSource::Default));
                                }
                                entry(d.name, &value, source, d.ty as i8, d.doc, doc, synonyms)
                            })
                            .collect()
                    });
                }
                BROKER => match core.broker_entity(&res.resource_name) {
                    Err(e) => {
                        out.error_code = e.code;
                        out.error_message = Some(sb(&e.message));
                    }
                    // The cluster-wide default entity: the dynamic defaults set on it, as Kafka.
                    Ok(Entity::Default) => {
                        out.configs = core
                            .dynamic_configs(Entity::Default)
                            .iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, v)| {
                                let (ty, text) = broker_type_and_doc(k);
                                let mut e = entry(k, v, ConfigSource::DynamicDefault, ty, text, doc, Vec::new());
                                if req.include_synonyms {
                                    e.synonyms = vec![synonym(k, v, ConfigSource::DynamicDefault)];
                                }
                                e
                            })
                            .collect();
                    }
                    Ok(Entity::Broker(id)) => {
                        out.configs = core.with_view(Some(id), |view| {
                            let mut configs = Vec::new();
                            let mut push = |k: &str, (v, src): (String, ConfigSource), default: &str| {
                                let (ty, text) = broker_type_and_doc(k);
                                let mut e = entry(k, &v, src, ty, text, doc, Vec::new());
                                e.read_only = !dynamic::is_dynamic(k);
                                if req.include_synonyms {
                                    e.synonyms = view.layers(k).iter().map(|(v, s)| synonym(k, v, *s)).collect();
                                    e.synonyms.push(synonym(k, default, ConfigSource::Default));
                                }
                                configs.push(e);
                            };
                            for (k, default, ..) in BROKER_KEYS {
                                if wanted(k) {
                                    push(k, view.broker_value(k), default);
                                }
                            }
                            for d in TOPIC_CONFIGS {
                                if wanted(d.broker_synonym) {
                                    push(d.broker_synonym, view.topic_default(d), d.default);
                                }
                            }
                            configs
                        });
                    }
                },
                other => {
                    out.error_code = codes::INVALID_REQUEST;
                    out.error_message = Some(sb(&format!("resource type {other} is not supported")));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The type and documentation of a broker-level key.
fn broker_type_and_doc(key: &str) -> (i8, &'static str) {
    if let Some(d) = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == key) {
        return (d.ty as i8, d.doc);
    }
    config::broker_key_def(key).map_or((config::ConfigType::String as i8, ""), |(_, _, ty, doc)| (*ty as i8, *doc))
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default().with_name(sb(name)).with_value(Some(sb(value))).with_source(source as i8)
}

fn entry(
    name: &str,
    value: &str,
    source: ConfigSource,
    ty: i8,
    doc: &str,
    with_doc: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(sb(name))
        .with_value(Some(sb(value)))
        .with_config_source(source as i8)
        .with_config_type(ty)
        .with_synonyms(synonyms)
        .with_documentation(if with_doc { Some(sb(doc)) } else { None })
}

/// Applies a full set of configs to a topic or a broker entity; returns (code, message).
fn apply(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    configs: Result<BTreeMap<String, String>, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = match configs {
        Ok(c) => c,
        Err(m) => return (codes::INVALID_CONFIG, Some(m)),
    };
    let result = match resource_type {
        TOPIC => ctx.core.set_topic_configs(name, configs, validate_only),
        BROKER => {
            ctx.core.broker_entity(name).and_then(|entity| ctx.core.set_broker_configs(entity, configs, validate_only))
        }
        other => return (codes::INVALID_REQUEST, Some(format!("altering resource type {other} is not supported"))),
    };
    match result {
        Ok(()) => (codes::NONE, None),
        Err(e) => (e.code, Some(e.message)),
    }
}

/// The configs set on a resource now: a topic's own, or a broker entity's dynamic ones.
fn current_configs(ctx: &Ctx<'_>, resource_type: i8, name: &str) -> BTreeMap<String, String> {
    match resource_type {
        TOPIC => ctx.core.topic(name).map(|t| t.configs.clone()).unwrap_or_default(),
        BROKER => ctx.core.broker_entity(name).map(|e| ctx.core.dynamic_configs(e)).unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

/// The value a list config has when the resource does not set it (APPEND starts from it).
fn inherited(ctx: &Ctx<'_>, resource_type: i8, name: &str, key: &str) -> Option<String> {
    let node = match resource_type {
        BROKER => name.parse().ok(),
        _ => Some(ctx.node_id()),
    };
    ctx.core.with_view(node, |view| {
        let def = match resource_type {
            BROKER => TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == key),
            _ => config::topic_config_def(key),
        }?;
        Some(view.topic_default(def).0)
    })
}

fn is_list(resource_type: i8, key: &str) -> bool {
    let def = match resource_type {
        BROKER => TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == key),
        _ => config::topic_config_def(key),
    };
    def.is_some_and(|d| d.ty == config::ConfigType::List)
}

pub(super) fn alter(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let configs = res
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            let (code, msg) = apply(ctx, res.resource_type, &res.resource_name, Ok(configs), req.validate_only);
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(|m| sb(&m)))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) fn incremental_alter(ctx: &Ctx<'_>, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let configs = current_configs(ctx, res.resource_type, &res.resource_name);
            let merged = res.configs.iter().try_fold(configs, |mut acc, c| {
                let name = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string());
                let is_list = is_list(res.resource_type, &name);
                match c.config_operation {
                    0 => {
                        acc.insert(name, value.unwrap_or_default());
                    }
                    1 => {
                        acc.remove(&name);
                    }
                    2 | 3 if !is_list => {
                        return Err(format!("{name} is not a list config; APPEND and SUBTRACT need one"))
                    }
                    2 => {
                        let current = acc
                            .get(&name)
                            .cloned()
                            .or_else(|| inherited(ctx, res.resource_type, &res.resource_name, &name));
                        let mut items: Vec<String> = current
                            .unwrap_or_default()
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect();
                        for v in value.unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
                            if !items.iter().any(|i| i == v) {
                                items.push(v.to_string());
                            }
                        }
                        acc.insert(name, items.join(","));
                    }
                    3 => {
                        let current = acc.get(&name).cloned().unwrap_or_default();
                        let remove: Vec<String> = value.unwrap_or_default().split(',').map(str::to_string).collect();
                        let items: Vec<&str> =
                            current.split(',').filter(|s| !s.is_empty() && !remove.iter().any(|r| r == s)).collect();
                        acc.insert(name, items.join(","));
                    }
                    op => return Err(format!("unknown config operation {op}")),
                }
                Ok(acc)
            });
            let (code, msg) = apply(ctx, res.resource_type, &res.resource_name, merged, req.validate_only);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(|m| sb(&m)))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
