//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and describe for
//! brokers). Every known config is reported with its value, source, synonyms and type.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::sb;
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
            match res.resource_type {
                TOPIC => {
                    let Some(topic) = core.topic(&res.resource_name) else {
                        out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message = Some(sb(&format!("topic '{}' does not exist", res.resource_name.as_str())));
                        return out;
                    };
                    out.configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let (value, source) = config::effective(&core.config, &topic.configs, d.name);
                            let mut synonyms = Vec::new();
                            if req.include_synonyms {
                                if source == ConfigSource::Topic {
                                    synonyms.push(synonym(d.name, &value, ConfigSource::Topic));
                                }
                                let (bv, bs) = core.config.topic_default(d);
                                if bs == ConfigSource::StaticBroker {
                                    synonyms.push(synonym(d.broker_synonym, &bv, bs));
                                }
                                synonyms.push(synonym(d.broker_synonym, d.default, ConfigSource::Default));
                            }
                            entry(d.name, &value, source, d.ty as i8, d.doc, req.include_documentation, synonyms)
                        })
                        .collect();
                }
                BROKER => {
                    let known = res.resource_name.is_empty()
                        || res.resource_name.parse::<i32>().ok().and_then(|id| core.broker(id)).is_some();
                    if !known {
                        out.error_code = codes::INVALID_REQUEST;
                        out.error_message =
                            Some(sb(&format!("broker '{}' does not exist", res.resource_name.as_str())));
                        return out;
                    }
                    let mut configs = Vec::new();
                    for (k, default, ty, doc) in BROKER_KEYS {
                        if wanted(k) {
                            let (v, src) = match core.config.overrides.get(*k) {
                                Some(v) => (v.clone(), ConfigSource::StaticBroker),
                                None => (default.to_string(), ConfigSource::Default),
                            };
                            configs.push(entry(k, &v, src, *ty as i8, doc, req.include_documentation, Vec::new()));
                        }
                    }
                    for d in TOPIC_CONFIGS {
                        if wanted(d.broker_synonym) {
                            let (v, src) = core.config.topic_default(d);
                            configs.push(entry(
                                d.broker_synonym,
                                &v,
                                src,
                                d.ty as i8,
                                d.doc,
                                req.include_documentation,
                                Vec::new(),
                            ));
                        }
                    }
                    for c in &mut configs {
                        c.read_only = true;
                    }
                    out.configs = configs;
                }
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

/// Applies a full set of topic configs; returns (code, message).
fn apply(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    configs: Result<BTreeMap<String, String>, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    if resource_type != TOPIC {
        return (
            codes::INVALID_REQUEST,
            Some(format!("altering resource type {resource_type} is not supported; broker configs are static")),
        );
    }
    let configs = match configs {
        Ok(c) => c,
        Err(m) => return (codes::INVALID_CONFIG, Some(m)),
    };
    match ctx.core.set_topic_configs(name, configs, validate_only) {
        Ok(()) => (codes::NONE, None),
        Err(e) => (e.code, Some(e.message)),
    }
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
            let configs = ctx.core.topic(&res.resource_name).map(|t| t.configs.clone()).unwrap_or_default();
            let merged = res.configs.iter().try_fold(configs, |mut acc, c| {
                let name = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string());
                let is_list = config::topic_config_def(&name).is_some_and(|d| d.ty == config::ConfigType::List);
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
                            .or_else(|| config::topic_config_def(&name).map(|d| ctx.core.config.topic_default(d).0));
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
