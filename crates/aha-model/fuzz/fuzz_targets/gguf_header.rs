//! The GGUF reader on arbitrary bytes: errors are fine, panics and huge allocations are not.
//! Where a header parses, every tensor is also read and dequantized.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.gguf");
    for check in [true, false] {
        if let Ok(g) = aha_model::gguf::GgufFile::parse(&mut &data[..], data.len() as u64, path, check) {
            let _ = g.get_str("general.architecture");
            if check {
                let start = g.data_offset as usize;
                for t in &g.tensors {
                    let off = start + t.offset as usize;
                    let bytes = &data[off..off + t.size_in_bytes()];
                    if let Ok(q) = aha_model::gguf::qtensor_from_bytes(t.dtype, bytes, &t.shape(), &candle_core::Device::Cpu) {
                        let _ = q.dequantize(&candle_core::Device::Cpu);
                    }
                }
            }
        }
    }
});
