//! The cluster-wide broker config resource (`--broker-defaults`, resource name ""), which
//! librdkafka cannot address (its config resources need a broker id): DescribeConfigs and
//! IncrementalAlterConfigs sent over a plain Kafka-protocol connection to a bootstrap broker.
//! Only for plaintext clusters; a secured one is refused with a message saying so.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::ffi::{ConfigOp, Entry};

const BROKER: i8 = 4;
/// The largest response accepted (a describe of every broker config is a few KiB).
const MAX_RESPONSE: usize = 16 << 20;

/// A plaintext connection to the first bootstrap broker that answers.
fn connect(bootstrap: &str, security_protocol: Option<&str>, timeout: Duration) -> Result<TcpStream> {
    if let Some(p) = security_protocol.filter(|p| !p.eq_ignore_ascii_case("plaintext")) {
        bail!(
            "the cluster-wide broker defaults are reached over a plaintext connection (librdkafka cannot address \
             them), and this client uses security.protocol={p}"
        );
    }
    let mut last = None;
    for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addrs = match server.to_socket_addrs() {
            Ok(a) => a,
            Err(e) => {
                last = Some(anyhow!("{server}: {e}"));
                continue;
            }
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    return Ok(s);
                }
                Err(e) => last = Some(anyhow!("{server}: {e}")),
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no bootstrap server given")))
        .with_context(|| crate::client::unreachable(bootstrap, "no broker accepted a connection"))
}

fn call<Rq: Encodable, Rs: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16, req: &Rq) -> Result<Rs> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("moldau-cli")))
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| anyhow!("encoding the request: {e}"))?;
    req.encode(&mut buf, version).map_err(|e| anyhow!("encoding the request: {e}"))?;
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    s.write_all(&frame).context("sending the request")?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).context("reading the answer")?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| anyhow!("a negative answer size"))?;
    if size > MAX_RESPONSE {
        bail!("an answer of {size} bytes is larger than {MAX_RESPONSE}");
    }
    let mut body = vec![0u8; size];
    s.read_exact(&mut body).context("reading the answer")?;
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| anyhow!("decoding the answer: {e}"))?;
    Rs::decode(&mut body, version).map_err(|e| anyhow!("decoding the answer: {e}"))
}

/// The dynamic cluster-wide broker defaults.
pub(crate) fn describe_defaults(bootstrap: &str, security: Option<&str>, timeout: Duration) -> Result<Vec<Entry>> {
    let mut s = connect(bootstrap, security, timeout)?;
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(StrBytes::from_static_str(""))
        .with_configuration_keys(None)]);
    let r: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, 1, &req)?;
    let r = r.results.into_iter().next().context("the answer names no resource")?;
    if r.error_code != 0 {
        bail!("{}", r.error_message.map(|m| m.to_string()).unwrap_or_else(|| format!("error code {}", r.error_code)));
    }
    Ok(r.configs
        .into_iter()
        .map(|c| Entry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: i32::from(c.config_source),
            read_only: c.read_only,
        })
        .collect())
}

/// IncrementalAlterConfigs of the cluster-wide broker defaults; the error is the broker's
/// message (it names the refused key).
pub(crate) fn alter_defaults(
    bootstrap: &str,
    security: Option<&str>,
    ops: &[ConfigOp],
    timeout: Duration,
) -> Result<()> {
    let mut s = connect(bootstrap, security, timeout)?;
    let configs = ops
        .iter()
        .map(|op| match op {
            ConfigOp::Set(k, v) => AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(v.clone()))),
            ConfigOp::Delete(k) => {
                AlterableConfig::default().with_name(StrBytes::from_string(k.clone())).with_config_operation(1)
            }
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(StrBytes::from_static_str(""))
        .with_configs(configs)]);
    let r: IncrementalAlterConfigsResponse = call(&mut s, ApiKey::IncrementalAlterConfigs, 0, &req)?;
    let r = r.responses.into_iter().next().context("the answer names no resource")?;
    if r.error_code != 0 {
        bail!("{}", r.error_message.map(|m| m.to_string()).unwrap_or_else(|| format!("error code {}", r.error_code)));
    }
    Ok(())
}
