//! Fuzzes the request path: frame checks, the length guard and the kafka-protocol decoder.
//! Run: `cd broker-sim/fuzz && cargo +nightly fuzz run request_decoder`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = moldau_broker_sim::fuzzing::decode_request_frame(data);
});
