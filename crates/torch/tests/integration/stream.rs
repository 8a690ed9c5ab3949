//! `train`'s loaders (issue 14, datasets larger than the device): the same tiny model
//! trained a few steps with the resident and the streaming loader (flips, label dropout and
//! dropout on, so every random draw of a step counts) writes the same output folder, bit
//! for bit; and `auto` says in the log which loader it chose.

use std::path::Path;

use msnr::cache::hash_tree;
use msnr::data::{DType, DatasetWriter};
use msnr::lang::Value;
use msnr::stages::StageSpec;

use super::support::{alone_in_a_child, Lines};

/// 45 RGB 8x8 items of two classes, in shards of 8 (the last one short).
fn dataset(dir: &Path) {
    let classes = vec!["a".into(), "b".into()];
    let mut w = DatasetWriter::create(dir, [3, 8, 8], DType::U8, classes).unwrap().with_shard_items(8);
    for i in 0..45u32 {
        let item: Vec<u8> = (0..192u32).map(|j| u8::try_from((i * 131 + j * 17) % 256).unwrap()).collect();
        w.push(&item, i64::from(i % 2)).unwrap();
    }
    w.finish().unwrap();
}

/// Trains with `loader` (as written in the language) into `root/<name>`; returns the output
/// folder's tree hash and the log lines.
fn train(root: &Path, data: &Path, name: &str, loader: &str) -> (String, Vec<String>) {
    let text = format!(
        "stage digits = mnist {{ count = 10 }}\n\
         stage model = train {{\n\
           data = digits\n\
           net = unet {{ channels = 32, mults = [1, 2], res_blocks = 1, attention = [4], heads = 2, dropout = 0.1 }}\n\
           target = v, weighting = min_snr {{ gamma = 5 }}, schedule = cosine {{ steps = 50 }}\n\
           optimizer = adamw {{ lr = 1e-3 }}, ema = 0.9, batch = 5, steps = 40\n\
           flip = true, label_dropout = 0.2, checkpoint_every = 16, log_every = 8{loader}\n\
         }}\n"
    );
    let pipeline = msnr::lang::load_str("p.msnr", &text, &[]).unwrap();
    let mut params = pipeline.stages.iter().find(|s| s.name == "model").unwrap().params.clone();
    params.insert("data".into(), Value::Path(data.to_path_buf()));
    let (out, work) = (root.join(name).join("out"), root.join(name).join("work"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let lines = Lines::default();
    msnr_torch::stages::train::run(&StageSpec::standalone("train", params, &out, &work), &lines).unwrap();
    (hash_tree(&out).unwrap(), lines.0.into_inner().unwrap())
}

#[test]
fn streaming_and_resident_loaders_train_the_same_model_bit_for_bit() {
    if alone_in_a_child("stream::streaming_and_resident_loaders_train_the_same_model_bit_for_bit") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    dataset(&data);
    let (resident, log) = train(root.path(), &data, "resident", ", loader = resident");
    assert!(log.iter().any(|l| l == "loader: resident (loader = resident)"), "{log:?}");
    let (stream, log) = train(root.path(), &data, "stream", ", loader = stream { prefetch = 2 }");
    assert!(log.iter().any(|l| l == "loader: stream, 2 batches ahead (loader = stream)"), "{log:?}");
    assert_eq!(stream, resident, "the streamed run's weights, EMA, config or log differ");
    let (auto, log) = train(root.path(), &data, "auto", "");
    assert!(log.iter().any(|l| l.starts_with("loader: resident (auto: the dataset's 0.0 MiB fit 50%")), "{log:?}");
    assert_eq!(auto, resident);
}
