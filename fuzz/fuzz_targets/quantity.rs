//! The quantity parser: never panics, and every accepted value survives the round trip
//! through its canonical form unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecar_injector::quantity::{Quantity, ResourceKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [ResourceKind::Cpu, ResourceKind::Memory] {
        if let Ok(quantity) = Quantity::parse(text, kind) {
            let canonical = quantity.to_canonical();
            let again = Quantity::parse(&canonical, kind).expect("the canonical form parses");
            assert_eq!(again.units(), quantity.units(), "{text:?} -> {canonical:?}");
            assert_eq!(again.to_canonical(), canonical, "canonical form is not stable");
        }
    }
});
