//! Fuzz target: any bytes as a `torch.save` file (zip or legacy) through `msnr-torchfile`.
//! Loading must fail with an error naming the file or succeed with tensors whose bytes
//! match their shapes; never panic, hang or allocate without bound. Seed the corpus with
//! the fixtures (`cp crates/torchfile/tests/fixtures/*.pt fuzz/corpus/torchfile/`) and run
//! `cargo fuzz run torchfile fuzz/corpus/torchfile`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match torchfile::load_bytes("fuzz.pt", data) {
        Ok(ckpt) => {
            for (name, t) in ckpt.tensors(None) {
                let numel: usize = t.shape.iter().product();
                assert_eq!(t.data.len(), numel * t.dtype.size(), "{name}");
                assert_eq!(t.to_f32().len(), numel);
            }
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.pt: ")),
    }
});
