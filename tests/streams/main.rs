//! Streams applications (engine + DSL) running against an embedded broker-sim cluster, each
//! test with its own cluster.

mod apps;
mod batching;
mod broker_kill;
mod changelog;
mod close;
mod compacted_restore;
mod crash;
mod crash_matrix;
mod fail_points;
mod fencing;
mod handlers;
mod operators;
mod pipelined_commit;
mod rebalance;
mod recovery;
mod restore;
mod slow_commits;
mod word_count;
