#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| obauth_fuzz::run("auth_callback", data));
