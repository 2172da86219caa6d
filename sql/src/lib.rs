//! Moldau's SQL front end: ksqlDB's statements over Kafka topics, planned by DataFusion and
//! run as Moldau topologies.
//!
//! Built so far: the statement layer (`statement`: ksqlDB's statements and clauses, with
//! positions for errors) and the column types (`types`).

pub mod error;
pub mod statement;
pub mod types;

pub use error::{Position, Result, SqlError};
pub use statement::{parse, Located, Statement};
pub use types::SqlType;
