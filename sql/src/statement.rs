//! The ksqlDB statement layer: splits a script into statements and parses what standard SQL
//! does not have (`CREATE STREAM … WITH (…)`, `KEY` columns, `WINDOW TUMBLING (…)`,
//! `EMIT CHANGES`, `PARTITION BY`, `SHOW`, `TERMINATE`, …). A query's ksqlDB clauses are
//! taken out and replaced by blanks, so the standard SQL left for DataFusion keeps every
//! token at its line and column, and DataFusion's errors point into the user's text.
//!
//! Unquoted identifiers are lower-cased, as DataFusion does; quoted ones keep their case.

mod parse;

use std::collections::BTreeMap;
use std::time::Duration;

pub use parse::parse;

use crate::error::Position;
use crate::types::SqlType;

/// A stream (every record an event) or a table (the latest record per key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// STREAM.
    Stream,
    /// TABLE.
    Table,
}

/// One column of `CREATE STREAM|TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: SqlType,
    /// A `KEY` (stream) or `PRIMARY KEY` (table) column: read from the record key.
    pub key: bool,
}

/// A `WITH (…)` property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    /// A quoted string.
    Text(String),
    /// A number.
    Number(i64),
}

/// `WITH (…)` properties, by lower-case name.
pub type Props = BTreeMap<String, PropValue>;

/// `CREATE STREAM|TABLE name (columns) WITH (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSource {
    /// Stream or table.
    pub kind: SourceKind,
    /// Name.
    pub name: String,
    /// Columns, key columns included.
    pub columns: Vec<Column>,
    /// Properties.
    pub props: Props,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `OR REPLACE`.
    pub or_replace: bool,
}

/// A window clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLING (SIZE s)`.
    Tumbling {
        /// Size.
        size: Duration,
    },
    /// `HOPPING (SIZE s, ADVANCE BY a)`.
    Hopping {
        /// Size.
        size: Duration,
        /// Advance.
        advance: Duration,
    },
    /// `SESSION (gap)`.
    Session {
        /// Inactivity gap.
        gap: Duration,
    },
}

/// `WINDOW …` with its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// The window.
    pub kind: WindowKind,
    /// `GRACE PERIOD g`, if given.
    pub grace: Option<Duration>,
}

/// `EMIT CHANGES` or `EMIT FINAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every change.
    Changes,
    /// Once per window, when it closes.
    Final,
}

/// A SELECT with its ksqlDB clauses taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Standard SQL for DataFusion (the ksqlDB clauses blanked out, positions kept).
    pub sql: String,
    /// `WINDOW …`.
    pub window: Option<WindowSpec>,
    /// `EMIT …`.
    pub emit: Option<Emit>,
    /// `PARTITION BY` expression text.
    pub partition_by: Option<String>,
    /// The query as written, its ksqlDB clauses included (for SHOW QUERIES).
    pub text: String,
}

/// `CREATE STREAM|TABLE name [WITH (…)] AS SELECT …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAs {
    /// Stream or table.
    pub kind: SourceKind,
    /// Name.
    pub name: String,
    /// Properties of the output.
    pub props: Props,
    /// The query.
    pub query: Query,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `OR REPLACE`.
    pub or_replace: bool,
}

/// What `SHOW` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// STREAMS.
    Streams,
    /// TABLES.
    Tables,
    /// QUERIES.
    Queries,
    /// TOPICS.
    Topics,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `CREATE STREAM|TABLE … (…) WITH (…)`.
    CreateSource(CreateSource),
    /// `CREATE STREAM|TABLE … AS SELECT …`.
    CreateAs(CreateAs),
    /// `INSERT INTO target SELECT …`.
    InsertInto {
        /// Target stream.
        target: String,
        /// The query.
        query: Query,
    },
    /// A `SELECT` (a pull query, or a push query with `EMIT CHANGES`).
    Query(Query),
    /// `SHOW …` / `LIST …`.
    Show(Show),
    /// `DESCRIBE name [EXTENDED]`.
    Describe {
        /// The stream or table.
        name: String,
        /// `EXTENDED`.
        extended: bool,
    },
    /// `EXPLAIN <query>`.
    Explain(Query),
    /// `DROP STREAM|TABLE [IF EXISTS] name [DELETE TOPIC]`.
    Drop {
        /// Stream or table.
        kind: SourceKind,
        /// Name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `DELETE TOPIC`.
        delete_topic: bool,
    },
    /// `TERMINATE query_id`.
    Terminate {
        /// The query id.
        id: String,
    },
    /// `SET 'property' = 'value'`: a property of the queries started after it (as ksqlDB's
    /// `SET 'auto.offset.reset'='earliest'`).
    Set {
        /// The property.
        key: String,
        /// Its value.
        value: String,
    },
    /// `UNSET 'property'`.
    Unset {
        /// The property.
        key: String,
    },
    /// `INSERT INTO s [(col, …)] VALUES (v, …)`: one record written to `s`'s topic.
    InsertValues {
        /// The stream or table.
        target: String,
        /// The columns given (all, in order, when `None`).
        columns: Option<Vec<String>>,
        /// The values, one per column.
        values: Vec<Literal>,
    },
}

/// A literal of `INSERT … VALUES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// A number as written (`-12`, `3.5`).
    Number(String),
    /// A single-quoted string.
    Text(String),
}

/// A statement with the position of its first token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The statement.
    pub statement: Statement,
    /// Where it starts.
    pub at: Position,
    /// Its text, as written (without the `;`).
    pub text: String,
}

#[cfg(test)]
mod tests;
