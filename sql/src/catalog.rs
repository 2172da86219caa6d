//! The streams and tables SQL knows: their columns, topic and formats, checked when created.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Result, SqlError};
use crate::statement::{Column, CreateSource, PropValue, Props, SourceKind};
use crate::types::SqlType;

/// How a record's key or value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object with one field per column.
    Json,
    /// Comma-separated values in column order.
    Delimited,
    /// One column in Kafka's serializer encodings (UTF-8 strings, big-endian numbers).
    Kafka,
}

impl Format {
    /// The format's name, as statements spell it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Delimited => "DELIMITED",
            Format::Kafka => "KAFKA",
        }
    }

    fn parse(property: &str, v: &str) -> Result<Self> {
        match v.to_ascii_uppercase().as_str() {
            "JSON" => Ok(Format::Json),
            "DELIMITED" => Ok(Format::Delimited),
            "KAFKA" => Ok(Format::Kafka),
            "AVRO" | "PROTOBUF" | "JSON_SR" | "PROTOBUF_NOSR" => {
                Err(SqlError::Unsupported(format!("{property}='{v}' (schema-registry formats)")))
            }
            other => {
                Err(SqlError::Semantic(format!("{property}: unknown format '{other}' (JSON, DELIMITED or KAFKA)")))
            }
        }
    }
}

/// A stream or table over a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDef {
    /// Name.
    pub name: String,
    /// Stream or table.
    pub kind: SourceKind,
    /// Columns, the key column(s) first as declared.
    pub columns: Vec<Column>,
    /// The topic.
    pub topic: String,
    /// Value format.
    pub value_format: Format,
    /// Key format.
    pub key_format: Format,
    /// The column whose value is the record time (else the record's timestamp).
    pub timestamp: Option<String>,
    /// Partitions to create the topic with, when it does not exist.
    pub partitions: Option<i32>,
    /// Replication factor to create the topic with.
    pub replicas: Option<i16>,
}

pub(crate) const KNOWN_PROPS: &[&str] =
    &["kafka_topic", "value_format", "key_format", "format", "partitions", "replicas", "timestamp"];

/// The key and value formats `WITH (…)` names (`format` is both).
pub(crate) fn formats(props: &Props) -> Result<(Option<Format>, Option<Format>)> {
    let format = text(props, "format")?;
    let key = text(props, "key_format")?.or(format).map(|f| Format::parse("key_format", f)).transpose()?;
    let value = text(props, "value_format")?.or(format).map(|f| Format::parse("value_format", f)).transpose()?;
    Ok((key, value))
}

fn text<'a>(props: &'a Props, key: &str) -> Result<Option<&'a str>> {
    match props.get(key) {
        None => Ok(None),
        Some(PropValue::Text(s)) => Ok(Some(s)),
        Some(PropValue::Number(_)) => Err(SqlError::Semantic(format!("property {key} takes a quoted string"))),
    }
}

fn number(props: &Props, key: &str) -> Result<Option<i64>> {
    match props.get(key) {
        None => Ok(None),
        Some(PropValue::Number(n)) => Ok(Some(*n)),
        Some(PropValue::Text(_)) => Err(SqlError::Semantic(format!("property {key} takes a number"))),
    }
}

impl SourceDef {
    /// Checks a `CREATE STREAM|TABLE` and makes its definition.
    pub fn from_create(c: &CreateSource) -> Result<Self> {
        let name = &c.name;
        if let Some(unknown) = c.props.keys().find(|k| !KNOWN_PROPS.contains(&k.as_str())) {
            return Err(SqlError::Semantic(format!(
                "{name}: unknown property '{unknown}' (known: {})",
                KNOWN_PROPS.join(", ")
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for col in &c.columns {
            if !seen.insert(col.name.as_str()) {
                return Err(SqlError::Semantic(format!("{name}: column {} is declared twice", col.name)));
            }
        }
        let topic = text(&c.props, "kafka_topic")?
            .ok_or_else(|| SqlError::Semantic(format!("{name}: WITH (kafka_topic='…') names the topic it reads")))?
            .to_string();
        let (key_format, value_format) = formats(&c.props)?;
        let Some(value_format) = value_format else {
            return Err(SqlError::Semantic(format!(
                "{name}: WITH (value_format='JSON'|'DELIMITED'|'KAFKA') is required"
            )));
        };
        let key_format = key_format.unwrap_or(Format::Kafka);
        let keys: Vec<&Column> = c.columns.iter().filter(|col| col.key).collect();
        if keys.len() > 1 && key_format == Format::Kafka {
            return Err(SqlError::Semantic(format!(
                "{name}: the KAFKA key format holds one key column; {} need key_format='JSON' or 'DELIMITED'",
                keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if c.kind == SourceKind::Table && keys.is_empty() {
            return Err(SqlError::Semantic(format!(
                "{name}: a table needs a PRIMARY KEY column (the record key it is keyed by)"
            )));
        }
        let values: Vec<&Column> = c.columns.iter().filter(|col| !col.key).collect();
        if value_format == Format::Kafka && values.len() != 1 {
            return Err(SqlError::Semantic(format!(
                "{name}: value_format='KAFKA' holds exactly one value column; {} are declared",
                values.len()
            )));
        }
        let timestamp = match text(&c.props, "timestamp")? {
            None => None,
            Some(t) => {
                let t = t.to_ascii_lowercase();
                match c.columns.iter().find(|col| col.name == t) {
                    Some(col) if matches!(col.ty, SqlType::BigInt | SqlType::Timestamp) => Some(t),
                    Some(col) => {
                        return Err(SqlError::Semantic(format!(
                            "{name}: timestamp column {t} is {}, not BIGINT or TIMESTAMP",
                            col.ty
                        )))
                    }
                    None => return Err(SqlError::Semantic(format!("{name}: timestamp names no column ({t})"))),
                }
            }
        };
        let partitions = number(&c.props, "partitions")?
            .map(|n| {
                i32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| SqlError::Semantic(format!("{name}: partitions must be between 1 and {}", i32::MAX)))
            })
            .transpose()?;
        let replicas = number(&c.props, "replicas")?
            .map(|n| {
                i16::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| SqlError::Semantic(format!("{name}: replicas must be between 1 and {}", i16::MAX)))
            })
            .transpose()?;
        Ok(SourceDef {
            name: name.clone(),
            kind: c.kind,
            columns: c.columns.clone(),
            topic,
            value_format,
            key_format,
            timestamp,
            partitions,
            replicas,
        })
    }

    /// The key columns, in order.
    pub fn key_columns(&self) -> Vec<Column> {
        self.columns.iter().filter(|c| c.key).cloned().collect()
    }

    /// The Arrow schema queries see: every column, then ROWTIME (the record time) and
    /// ROWPARTITION / ROWOFFSET, as ksqlDB's pseudo columns.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), true)).collect();
        fields.push(Field::new("rowtime", SqlType::Timestamp.arrow(), false));
        fields.push(Field::new("rowpartition", DataType::Int32, false));
        fields.push(Field::new("rowoffset", DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// The schema a windowed aggregation sees: [`schema`](Self::schema), then WINDOWSTART and
    /// WINDOWEND (BIGINT, ms; filled per window by the aggregation).
    pub fn windowed_schema(&self) -> SchemaRef {
        let base = self.schema();
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        for c in crate::planner::WINDOW_COLUMNS {
            fields.push(Field::new(c, DataType::Int64, true));
        }
        Arc::new(Schema::new(fields))
    }
}

/// Every stream and table, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    sources: BTreeMap<String, SourceDef>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a definition; `Ok(false)` when it exists and `if_not_exists` says to keep it.
    pub fn add(&mut self, def: SourceDef, or_replace: bool, if_not_exists: bool) -> Result<bool> {
        if let Some(existing) = self.sources.get(&def.name) {
            if if_not_exists {
                return Ok(false);
            }
            if !or_replace {
                let what = if existing.kind == SourceKind::Stream { "stream" } else { "table" };
                return Err(SqlError::Semantic(format!("a {what} named {} exists already", def.name)));
            }
        }
        self.sources.insert(def.name.clone(), def);
        Ok(true)
    }

    /// Looks up a stream or table.
    pub fn get(&self, name: &str) -> Option<&SourceDef> {
        self.sources.get(name)
    }

    /// Removes one; the error names it when it does not exist.
    pub fn remove(&mut self, name: &str) -> Result<SourceDef> {
        self.sources.remove(name).ok_or_else(|| SqlError::Semantic(format!("no stream or table named {name}")))
    }

    /// Every definition, by name.
    pub fn sources(&self) -> impl Iterator<Item = &SourceDef> {
        self.sources.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{parse, Statement};

    fn def(sql: &str) -> Result<SourceDef> {
        match parse(sql).unwrap().remove(0).statement {
            Statement::CreateSource(c) => SourceDef::from_create(&c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn should_check_properties_keys_and_timestamps() {
        let d = def("CREATE STREAM s (id STRING KEY, ts BIGINT, v DOUBLE) WITH (kafka_topic='t', value_format='json', partitions=3, timestamp='ts')").unwrap();
        assert_eq!(
            (d.topic.as_str(), d.value_format, d.key_format, d.partitions),
            ("t", Format::Json, Format::Kafka, Some(3))
        );
        assert_eq!(d.timestamp.as_deref(), Some("ts"));
        assert_eq!(d.schema().fields().len(), 6, "three columns and three pseudo columns");
        let e = |sql: &str| def(sql).unwrap_err().to_string();
        assert!(e("CREATE STREAM s (v INT) WITH (value_format='JSON')").contains("kafka_topic"));
        assert!(e("CREATE STREAM s (v INT) WITH (kafka_topic='t')").contains("value_format"));
        assert!(e("CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='XML')").contains("XML"));
        assert!(e("CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='AVRO')").contains("not supported"));
        assert!(
            e("CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='JSON', colour='red')").contains("colour")
        );
        assert!(e("CREATE STREAM s (v INT, v STRING) WITH (kafka_topic='t', value_format='JSON')").contains("twice"));
        assert!(e("CREATE TABLE t (v INT) WITH (kafka_topic='t', value_format='JSON')").contains("PRIMARY KEY"));
        assert!(e("CREATE STREAM s (v STRING) WITH (kafka_topic='t', value_format='JSON', timestamp='v')")
            .contains("BIGINT or TIMESTAMP"));
        assert!(
            e("CREATE STREAM s (a INT, b INT) WITH (kafka_topic='t', value_format='KAFKA')").contains("exactly one")
        );
        assert!(e("CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='JSON', partitions=0)")
            .contains("partitions"));
    }

    #[test]
    fn should_refuse_a_second_source_of_the_same_name_unless_asked() {
        let d = def("CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='JSON')").unwrap();
        let mut c = Catalog::new();
        assert!(c.add(d.clone(), false, false).unwrap());
        assert!(c.add(d.clone(), false, false).unwrap_err().to_string().contains("exists already"));
        assert!(!c.add(d.clone(), false, true).unwrap());
        assert!(c.add(d, true, false).unwrap());
        assert!(c.remove("nope").unwrap_err().to_string().contains("nope"));
    }
}
