//! The Moldau runtime: Processor API, topology and stream threads. Filled in by the engine issue.
