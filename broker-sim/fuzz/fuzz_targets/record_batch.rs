//! Fuzzes record batch validation and the bounded record reader (decompression included).
//! Run: `cd broker-sim/fuzz && cargo +nightly fuzz run record_batch`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = moldau_broker_sim::fuzzing::read_record_batch(data);
});
