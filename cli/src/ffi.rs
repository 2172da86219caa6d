//! The admin calls librdkafka has and the `rdkafka` crate does not wrap yet:
//! IncrementalAlterConfigs (with the broker's error message, and the cluster-wide broker
//! resource ""), DescribeConfigs of the cluster-wide broker resource, and
//! DeleteConsumerGroupOffsets (OffsetDelete). They run on the admin client's own handle, so
//! `--command-config` (security settings included) applies to them too.
//!
//! Every call makes a private result queue, waits on it with a timeout, and frees what it made
//! on every path.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka_sys::bindings as rd;
use rdkafka_sys::types::RDKafkaRespErr;

/// A config resource: a topic or a broker by node id (librdkafka cannot address the
/// cluster-wide default "", see `raw.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource<'a> {
    /// A topic.
    Topic(&'a str),
    /// A broker by node id.
    Broker(&'a str),
}

/// An incremental config operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigOp {
    /// Set key to value.
    Set(String, String),
    /// Remove the key (back to the inherited value).
    Delete(String),
}

/// One described config entry: name, value, source (Kafka's code), read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Config name.
    pub(crate) name: String,
    /// Value, if not sensitive.
    pub(crate) value: Option<String>,
    /// Kafka's config source code (1 topic, 2 dynamic broker, 3 dynamic default, 4 static, 5 default).
    pub(crate) source: i32,
    /// Cannot change at run time.
    pub(crate) read_only: bool,
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("'{s}' contains a NUL byte"))
}

unsafe fn text(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// A result queue and admin options, freed on drop.
struct Call {
    queue: *mut rd::rd_kafka_queue_t,
    options: *mut rd::rd_kafka_AdminOptions_t,
    rk: *mut rd::rd_kafka_t,
    timeout: Duration,
}

impl Call {
    fn new(admin: &AdminClient<DefaultClientContext>, timeout: Duration) -> Self {
        let rk = admin.inner().native_ptr();
        // SAFETY: rk is the live handle of `admin`, which outlives this call.
        unsafe {
            let options = rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ANY);
            let mut err = [0 as c_char; 256];
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options,
                timeout.as_millis().min(i32::MAX as u128) as i32,
                err.as_mut_ptr(),
                err.len(),
            );
            Call { queue: rd::rd_kafka_queue_new(rk), options, rk, timeout }
        }
    }

    /// Waits for the result event; the error says what timed out or failed.
    fn wait(&self, what: &str) -> Result<Event> {
        // SAFETY: the queue is ours and alive; a returned event is owned by the caller.
        let ev = unsafe { rd::rd_kafka_queue_poll(self.queue, self.timeout.as_millis().min(i32::MAX as u128) as i32) };
        if ev.is_null() {
            bail!("{what}: no answer within {}s", self.timeout.as_secs());
        }
        let ev = Event(ev);
        // SAFETY: ev is a live event.
        unsafe {
            let err = rd::rd_kafka_event_error(ev.0);
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                let msg = text(rd::rd_kafka_event_error_string(ev.0)).unwrap_or_default();
                bail!("{what}: {msg}");
            }
        }
        Ok(ev)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // SAFETY: both were created in `new` and are freed once.
        unsafe {
            rd::rd_kafka_AdminOptions_destroy(self.options);
            rd::rd_kafka_queue_destroy(self.queue);
        }
    }
}

/// A result event, freed on drop.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event came from rd_kafka_queue_poll and is freed once.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// A config resource, freed on drop.
struct ConfigResource(*mut rd::rd_kafka_ConfigResource_t);

impl ConfigResource {
    fn new(resource: Resource<'_>) -> Result<Self> {
        let (ty, name) = match resource {
            Resource::Topic(t) => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, t),
            Resource::Broker(b) => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER, b),
        };
        let name_c = cstring(name)?;
        // SAFETY: name_c is a valid C string; the resource copies it. librdkafka answers NULL
        // for a name it cannot take (an empty one), which must never reach its admin calls.
        let p = unsafe { rd::rd_kafka_ConfigResource_new(ty, name_c.as_ptr()) };
        if p.is_null() {
            bail!("librdkafka cannot address the config resource '{name}'");
        }
        Ok(ConfigResource(p))
    }
}

impl Drop for ConfigResource {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_ConfigResource_new, freed once.
        unsafe { rd::rd_kafka_ConfigResource_destroy(self.0) }
    }
}

/// The first resource of a config result: its error (with the broker's message), else its
/// entries.
unsafe fn resource_entries(
    res: *mut *const rd::rd_kafka_ConfigResource_t,
    cnt: usize,
    what: &str,
) -> Result<Vec<Entry>> {
    if res.is_null() || cnt == 0 {
        bail!("{what}: the answer names no resource");
    }
    let r = *res;
    let err = rd::rd_kafka_ConfigResource_error(r);
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        let msg = text(rd::rd_kafka_ConfigResource_error_string(r))
            .filter(|m| !m.is_empty())
            .or_else(|| text(rd::rd_kafka_err2str(err)))
            .unwrap_or_default();
        bail!("{what}: {msg}");
    }
    let mut n = 0usize;
    let entries = rd::rd_kafka_ConfigResource_configs(r, &mut n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let e = *entries.add(i);
        out.push(Entry {
            name: text(rd::rd_kafka_ConfigEntry_name(e)).unwrap_or_default(),
            value: text(rd::rd_kafka_ConfigEntry_value(e)),
            source: rd::rd_kafka_ConfigEntry_source(e) as i32,
            read_only: rd::rd_kafka_ConfigEntry_is_read_only(e) != 0,
        });
    }
    Ok(out)
}

/// IncrementalAlterConfigs of one resource; the error carries the broker's message, which
/// names the refused key.
pub(crate) fn incremental_alter(
    admin: &AdminClient<DefaultClientContext>,
    resource: Resource<'_>,
    ops: &[ConfigOp],
    timeout: Duration,
) -> Result<()> {
    let call = Call::new(admin, timeout);
    let res = ConfigResource::new(resource)?;
    for op in ops {
        let (name, ty, value) = match op {
            ConfigOp::Set(k, v) => (k, rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, Some(v)),
            ConfigOp::Delete(k) => (k, rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE, None),
        };
        let name_c = cstring(name)?;
        let value_c = value.map(|v| cstring(v)).transpose()?;
        // SAFETY: the strings live across the call; the resource copies them.
        unsafe {
            let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                res.0,
                name_c.as_ptr(),
                ty,
                value_c.as_ref().map_or(ptr::null(), |v| v.as_ptr()),
            );
            if !err.is_null() {
                let msg = text(rd::rd_kafka_error_string(err)).unwrap_or_default();
                rd::rd_kafka_error_destroy(err);
                bail!("{name}: {msg}");
            }
        }
    }
    let mut arr = [res.0];
    // SAFETY: the array holds one live resource; librdkafka copies what it needs.
    unsafe { rd::rd_kafka_IncrementalAlterConfigs(call.rk, arr.as_mut_ptr(), 1, call.options, call.queue) };
    let ev = call.wait("altering configs")?;
    // SAFETY: ev is an IncrementalAlterConfigs result event.
    unsafe {
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(ev.0);
        if result.is_null() {
            bail!("altering configs: unexpected answer");
        }
        let mut n = 0usize;
        let res = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n);
        resource_entries(res, n, "altering configs").map(|_| ())
    }
}

/// DescribeConfigs of one resource, with Kafka's source codes.
pub(crate) fn describe(
    admin: &AdminClient<DefaultClientContext>,
    resource: Resource<'_>,
    timeout: Duration,
) -> Result<Vec<Entry>> {
    let call = Call::new(admin, timeout);
    let res = ConfigResource::new(resource)?;
    let mut arr = [res.0];
    // SAFETY: as in incremental_alter.
    unsafe { rd::rd_kafka_DescribeConfigs(call.rk, arr.as_mut_ptr(), 1, call.options, call.queue) };
    let ev = call.wait("describing configs")?;
    // SAFETY: ev is a DescribeConfigs result event.
    unsafe {
        let result = rd::rd_kafka_event_DescribeConfigs_result(ev.0);
        if result.is_null() {
            bail!("describing configs: unexpected answer");
        }
        let mut n = 0usize;
        let res = rd::rd_kafka_DescribeConfigs_result_resources(result, &mut n);
        resource_entries(res, n, "describing configs")
    }
}

/// DeleteConsumerGroupOffsets (OffsetDelete): per partition, `None` when deleted, else the
/// reason (GROUP_SUBSCRIBED_TO_TOPIC while a member consumes it).
pub(crate) fn delete_group_offsets(
    admin: &AdminClient<DefaultClientContext>,
    group: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<(String, i32, Option<String>)>> {
    let call = Call::new(admin, timeout);
    let group_c = cstring(group)?;
    // SAFETY: the list and request are created, handed to librdkafka (which copies them) and
    // freed here; result pointers are read while the event is alive.
    unsafe {
        let tpl = rd::rd_kafka_topic_partition_list_new(partitions.len() as i32);
        for (t, p) in partitions {
            let t = cstring(t)?;
            rd::rd_kafka_topic_partition_list_add(tpl, t.as_ptr(), *p);
        }
        let del = rd::rd_kafka_DeleteConsumerGroupOffsets_new(group_c.as_ptr(), tpl);
        rd::rd_kafka_topic_partition_list_destroy(tpl);
        let mut arr = [del];
        rd::rd_kafka_DeleteConsumerGroupOffsets(call.rk, arr.as_mut_ptr(), 1, call.options, call.queue);
        rd::rd_kafka_DeleteConsumerGroupOffsets_destroy(del);
        let ev = call.wait("deleting offsets")?;
        let result = rd::rd_kafka_event_DeleteConsumerGroupOffsets_result(ev.0);
        if result.is_null() {
            bail!("deleting offsets: unexpected answer");
        }
        let mut n = 0usize;
        let groups = rd::rd_kafka_DeleteConsumerGroupOffsets_result_groups(result, &mut n);
        Ok(group_partitions(groups, n, group, "deleting offsets")?
            .into_iter()
            .map(|(t, p, _, err)| (t, p, err))
            .collect())
    }
}

/// The committed offsets of `group` (ListConsumerGroupOffsets of every partition it has one
/// for): (topic, partition, offset).
pub(crate) fn list_group_offsets(
    admin: &AdminClient<DefaultClientContext>,
    group: &str,
    timeout: Duration,
) -> Result<Vec<(String, i32, i64)>> {
    let call = Call::new(admin, timeout);
    let group_c = cstring(group)?;
    // SAFETY: as in delete_group_offsets; a null partition list asks for every partition.
    unsafe {
        let list = rd::rd_kafka_ListConsumerGroupOffsets_new(group_c.as_ptr(), ptr::null());
        let mut arr = [list];
        rd::rd_kafka_ListConsumerGroupOffsets(call.rk, arr.as_mut_ptr(), 1, call.options, call.queue);
        rd::rd_kafka_ListConsumerGroupOffsets_destroy(list);
        let ev = call.wait("listing committed offsets")?;
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(ev.0);
        if result.is_null() {
            bail!("listing committed offsets: unexpected answer");
        }
        let mut n = 0usize;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut n);
        Ok(group_partitions(groups, n, group, "listing committed offsets")?
            .into_iter()
            .filter(|(_, _, offset, err)| err.is_none() && *offset >= 0)
            .map(|(t, p, o, _)| (t, p, o))
            .collect())
    }
}

/// One partition of a group result: topic, partition, offset, error.
type PartitionResult = (String, i32, i64, Option<String>);

/// The partitions of the first group result.
unsafe fn group_partitions(
    groups: *mut *const rd::rd_kafka_group_result_t,
    n: usize,
    group: &str,
    what: &str,
) -> Result<Vec<PartitionResult>> {
    if groups.is_null() || n == 0 {
        bail!("{what}: the answer names no group");
    }
    let g = *groups;
    let gerr = rd::rd_kafka_group_result_error(g);
    if !gerr.is_null() {
        bail!("{what} of group {group}: {}", text(rd::rd_kafka_error_string(gerr)).unwrap_or_default());
    }
    let parts = rd::rd_kafka_group_result_partitions(g);
    let mut out = Vec::new();
    if !parts.is_null() {
        for i in 0..(*parts).cnt.max(0) as usize {
            let e = &*(*parts).elems.add(i);
            let err = (e.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
                .then(|| text(rd::rd_kafka_err2str(e.err)).unwrap_or_default());
            out.push((text(e.topic).unwrap_or_default(), e.partition, e.offset, err));
        }
    }
    Ok(out)
}
