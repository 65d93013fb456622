//! The GGUF reader on arbitrary bytes, strict (tensors inside the file) and header-only:
//! errors are fine, panics and huge allocations are not. Where a header parses, the
//! metadata helpers run and every tensor's byte span is sliced as a loader would.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.gguf");
    for check in [true, false] {
        if let Ok(g) = aha_gguf::GgufFile::parse(&mut &data[..], data.len() as u64, path, check) {
            let _ = g.get_str("general.architecture");
            let _ = g.special_ids();
            if check {
                let start = g.data_offset as usize;
                for t in &g.tensors {
                    let off = start + t.offset as usize;
                    let bytes = &data[off..off + t.size_in_bytes()];
                    let _ = aha_gguf::AlignedBytes::from_slice(bytes);
                }
            }
        }
    }
});
