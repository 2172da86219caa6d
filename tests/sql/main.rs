//! SQL statements run by the executor against an embedded broker-sim cluster: streams over
//! topics, persistent queries as exactly-once Moldau applications, the catalog statements.

mod aggregate;
mod commands;
mod equivalence;
mod fleet;
mod join;
mod persistent;
mod pull;
mod push;
mod server;
mod slt;
mod table;
