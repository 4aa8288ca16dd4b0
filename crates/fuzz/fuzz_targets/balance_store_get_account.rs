//! libFuzzer target: bytes -> `BalanceStoreGetAccount` request decode -> validation (see
//! `banktransfer_fuzz::Target::BalanceStoreGetAccount`). Run with `make fuzz`.

#![no_main]

use banktransfer_fuzz::Target;
use banktransfer_fuzz::alloc_budget::CountingAllocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fuzz_target!(|data: &[u8]| banktransfer_fuzz::fuzz_one(Target::BalanceStoreGetAccount, data));
