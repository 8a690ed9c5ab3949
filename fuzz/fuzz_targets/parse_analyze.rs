//! Fuzz target: any text through the whole front end (parse, imports,
//! analysis, sweeps, a `--set` override) and the formatter, which must be
//! idempotent whenever it succeeds. Run with `cargo fuzz run parse_analyze
//! fuzz/corpus/parse_analyze` after seeding the corpus with the committed
//! pipelines (`cp tests/fixtures/lang/*/*.msnr stdlib/*.msnr fuzz/corpus/parse_analyze/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(d) = msnr::lang::load_str("fuzz.msnr", text, &[("gamma".into(), "7".into())]) {
        assert!(!d.render_plain().is_empty());
    }
    if let Ok(once) = msnr::lang::format(text) {
        let twice = msnr::lang::format(&once).expect("formatter output parses");
        assert_eq!(once, twice, "formatter is not idempotent");
    }
});
