//! The typed Moldau streams DSL. Filled in by the engine + dsl issue.
