//! Moldau's SQL front end: ksqlDB's statements over Kafka topics, planned by DataFusion and
//! run as Moldau topologies.
//!
//! Built so far: the statement layer (`statement`: ksqlDB's statements and clauses, with
//! positions for errors), the column types (`types`), the catalog of streams and tables
//! (`catalog`), query planning with DataFusion (`planner`) and stateless queries evaluated by
//! DataFusion's physical expressions over Arrow record batches (`eval`).

mod admin;
pub mod aggregate;
pub mod catalog;
pub mod client;
mod codec;
pub mod commands;
pub mod error;
pub mod eval;
pub mod executor;
mod functions;
pub mod join;
pub mod planner;
pub mod pull;
pub mod push;
pub mod query;
mod rowcodec;
pub mod server;
pub mod statement;
pub mod types;

pub use catalog::{Catalog, Format, SourceDef};
pub use error::{Position, Result, SqlError};
pub use executor::{Executor, ExecutorConfig, Outcome};
pub use planner::Planner;
pub use push::{PushQuery, Row};
pub use statement::{parse, Located, Statement};
pub use types::SqlType;
