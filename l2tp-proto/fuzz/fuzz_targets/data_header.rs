#![no_main]
//! `cargo +nightly fuzz run data_header` (from l2tp-proto/); the test suite runs the
//! same entry point with a bounded randomized loop.
libfuzzer_sys::fuzz_target!(|data: &[u8]| l2tp_proto::fuzzing::data_header(data));
