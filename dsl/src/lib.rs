//! The typed Moldau streams DSL: [`StreamsBuilder`], [`KStream`], [`KGroupedStream`] and
//! [`KTable`], compiled into an engine [`Topology`](moldau_engine::Topology).
//!
//! ```text
//! builder.stream("text") ─▶ flat_map_values ─▶ select_key ─▶ group_by_key ─▶ count ─▶ to_stream ─▶ to("counts")
//!                                                  └── key changed: a repartition topic is inserted here
//! ```

mod builder;
mod error;
mod grouped;
mod join;
mod kstream;
mod ktable;
mod observed;
mod processors;
mod serdes;
mod session;
mod sliding;
mod suppress;
mod windowed;

pub use builder::StreamsBuilder;
pub use error::{Error, Result};
pub use grouped::KGroupedStream;
pub use join::Joined;
pub use kstream::{Branched, KStream};
pub use ktable::{Change, KTable};
pub use serdes::{Consumed, Grouped, Produced, SerdeRef, WindowedSerde};
pub use session::{SessionWindowedKStream, SessionWindows};
pub use sliding::{SlidingWindowedKStream, SlidingWindows};
pub use suppress::Suppressed;
pub use windowed::{TimeWindowedKStream, TimeWindows};

/// The engine and state-store crates, re-exported.
pub use moldau_engine as engine;
pub use moldau_engine::state;
