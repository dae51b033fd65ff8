#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| obauth_fuzz::run("worldline_token", data));
