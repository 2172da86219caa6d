//! Moldau's SQL front end: ksqlDB's statements over Kafka topics, planned by DataFusion and
//! run as Moldau topologies.
//!
//! The parts: the statement layer (`statement`: ksqlDB's statements and clauses, with
//! positions for errors), column types (`types`), the catalog of streams and tables
//! (`catalog`), keys and values in their formats (`codec`, `values`), planning with
//! DataFusion (`planner`), the compiled queries (`eval` and `query`: stateless; `aggregate`;
//! `join`) run as topologies, pull and push queries (`pull`, `push`), the executor of
//! statements (`executor`), the command topic (`commands`), and the HTTP server and its
//! client (`server`, `client`).

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
mod values;

pub use catalog::{Catalog, Format, SourceDef};
pub use error::{Position, Result, SqlError};
pub use executor::{Executor, ExecutorConfig, Outcome};
pub use planner::Planner;
pub use push::{PushQuery, Row};
pub use statement::{parse, Located, Statement};
pub use types::SqlType;
