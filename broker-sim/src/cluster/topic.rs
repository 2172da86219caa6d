//! Topics and partitions: metadata (id, replicas, leader, epoch, config) and their logs.
//!
//! A topic's metadata is persisted in `<data_dir>/__cluster/topics/<name>.meta` (a small
//! `key=value` file written atomically); each partition's log lives in
//! `<data_dir>/<topic>-<partition>/`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::ResolvedTopicConfig;
use crate::error::{Error, Result};
use crate::log::PartitionLog;
use crate::storage::Dir;

/// One partition of a topic.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Partition index.
    pub(crate) index: i32,
    /// Broker ids holding a replica; the first is the preferred leader.
    pub(crate) replicas: Vec<i32>,
    /// Current leader broker id.
    pub(crate) leader: i32,
    /// Current leader epoch.
    pub(crate) leader_epoch: i32,
    /// Enforced settings, resolved from the topic's configs and its leader's broker configs.
    pub(crate) config: RwLock<ResolvedTopicConfig>,
    /// The partition's log.
    pub(crate) log: Mutex<PartitionLog>,
}

/// A topic: metadata plus its partitions.
#[derive(Debug)]
pub(crate) struct Topic {
    /// Topic name.
    pub(crate) name: String,
    /// Topic id (Metadata v10+).
    pub(crate) id: Uuid,
    /// Internal topics (`__consumer_offsets`) are flagged in Metadata.
    pub(crate) internal: bool,
    /// Configs set on the topic itself.
    pub(crate) configs: BTreeMap<String, String>,
    /// Partitions, indexed by partition number.
    pub(crate) partitions: Vec<Arc<Partition>>,
}

/// Checks a topic name the way Kafka does; the error says what is wrong.
pub(crate) fn validate_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters long; the limit is 249", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name '{name}' contains '{c}'; allowed are ASCII letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

impl Partition {
    /// Applies newly resolved settings to the partition and its log.
    pub(crate) fn set_config(&self, resolved: ResolvedTopicConfig) {
        self.log.lock().set_config(resolved.log.clone());
        *self.config.write() = resolved;
    }
}

impl Topic {
    /// Directory of partition `p`'s log under `data_dir`.
    pub(crate) fn partition_dir(data_dir: &Dir, topic: &str, p: i32) -> Dir {
        data_dir.sub(format!("{topic}-{p}"))
    }

    /// The directory of the topic metadata files.
    pub(crate) fn meta_dir(data_dir: &Dir) -> Dir {
        data_dir.sub("__cluster").sub("topics")
    }

    /// Name of the metadata file of `topic` (in [`Self::meta_dir`]).
    pub(crate) fn meta_file(topic: &str) -> String {
        format!("{topic}.meta")
    }

    /// Persists this topic's metadata.
    pub(crate) fn save(&self, data_dir: &Dir) -> Result<()> {
        let mut s = format!("id={}\ninternal={}\npartitions={}\n", self.id, self.internal, self.partitions.len());
        for p in &self.partitions {
            let replicas: Vec<String> = p.replicas.iter().map(i32::to_string).collect();
            s.push_str(&format!("replicas.{}={}\n", p.index, replicas.join(",")));
            s.push_str(&format!("leader.{}={}\n", p.index, p.leader));
            s.push_str(&format!("epoch.{}={}\n", p.index, p.leader_epoch));
        }
        for (k, v) in &self.configs {
            s.push_str(&format!("config.{k}={v}\n"));
        }
        let dir = Self::meta_dir(data_dir);
        dir.create()?;
        dir.write_atomic(&Self::meta_file(&self.name), s.as_bytes())
    }
}

/// Parsed contents of a topic metadata file.
#[derive(Debug, Default)]
pub(crate) struct TopicMeta {
    /// Topic id.
    pub(crate) id: Uuid,
    /// Internal flag.
    pub(crate) internal: bool,
    /// Per partition: replicas, leader, epoch.
    pub(crate) partitions: Vec<(Vec<i32>, i32, i32)>,
    /// Topic configs.
    pub(crate) configs: BTreeMap<String, String>,
}

/// Reads a topic metadata file; the error names the file and the bad line.
pub(crate) fn load_meta(dir: &Dir, name: &str) -> Result<TopicMeta> {
    let path = dir.join(name);
    let bytes = dir.fs.read(&path).map_err(|e| Error::io("reading topic metadata", e))?;
    let text = String::from_utf8_lossy(&bytes);
    let bad = |line: &str| Error::Corrupt(format!("{}: bad line '{line}'", path.display()));
    let mut meta = TopicMeta::default();
    let mut count = 0usize;
    let mut kv = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| bad(line))?;
        match k {
            "id" => meta.id = Uuid::parse_str(v).map_err(|_| bad(line))?,
            "internal" => meta.internal = v == "true",
            "partitions" => count = v.parse().map_err(|_| bad(line))?,
            _ => kv.push((k.to_string(), v.to_string(), line.to_string())),
        }
    }
    if count > 100_000 {
        return Err(bad("partitions"));
    }
    meta.partitions = vec![(Vec::new(), -1, 0); count];
    for (k, v, line) in kv {
        if let Some(cfg) = k.strip_prefix("config.") {
            meta.configs.insert(cfg.to_string(), v);
            continue;
        }
        let (field, idx) = k.split_once('.').ok_or_else(|| bad(&line))?;
        let idx: usize = idx.parse().map_err(|_| bad(&line))?;
        let entry = meta.partitions.get_mut(idx).ok_or_else(|| bad(&line))?;
        match field {
            "replicas" => {
                entry.0 = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| bad(&line)))
                    .collect::<Result<_>>()?
            }
            "leader" => entry.1 = v.parse().map_err(|_| bad(&line))?,
            "epoch" => entry.2 = v.parse().map_err(|_| bad(&line))?,
            _ => return Err(bad(&line)),
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_reject_bad_topic_names() {
        assert!(validate_topic_name("orders-v1.x_y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").unwrap_err().contains('/'));
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn should_name_the_file_when_metadata_is_corrupt() {
        let dir = Dir::new(Arc::new(crate::storage::SimFs::new()), "/data");
        dir.create().unwrap();
        dir.write_atomic("t.meta", b"id=not-a-uuid\n").unwrap();
        let err = load_meta(&dir, "t.meta").unwrap_err().to_string();
        assert!(err.contains("t.meta"), "{err}");
    }
}
