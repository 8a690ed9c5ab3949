//! Every fixture read back exactly: tensor names, dtypes, shapes and bytes equal to the
//! safetensors file PyTorch wrote beside it; metadata values; refusals of malicious files.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};
use torchfile::{DType, ErrorKind, Format, PickleProblem, Tensor, Value};

use crate::{fixture, torch_fixtures};

fn dtype_of(d: Dtype) -> DType {
    match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        other => panic!("unexpected dtype {other:?} in a fixture"),
    }
}

/// The tensors PyTorch flattened into `<stem>.safetensors`.
fn expected(stem: &str) -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(fixture(&format!("{stem}.safetensors"))).expect("expected tensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = Tensor { dtype: dtype_of(view.dtype()), shape: view.shape().to_vec(), data: view.data().to_vec() };
            (name, t)
        })
        .collect()
}

#[test]
fn every_fixture_reads_back_exactly() {
    let files = torch_fixtures();
    assert!(files.len() >= 17, "fixtures missing: {files:?}");
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let ckpt = torchfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let want_format = if stem.starts_with("zip_") { Format::Zip } else { Format::Legacy };
        assert_eq!(ckpt.format(), want_format, "{stem}");
        let got = ckpt.tensors(None);
        assert_eq!(ckpt.clone().into_tensors(None), got, "{stem}: into_tensors");
        let want = expected(&stem);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{stem}");
        for (name, tensor) in &want {
            assert_eq!(&got[name], tensor, "{stem}: {name}");
        }
    }
}

#[test]
fn every_dtype_is_present_with_its_values() {
    for fmt in ["zip", "legacy"] {
        let ckpt = torchfile::load(fixture(&format!("{fmt}_dtypes.pt"))).unwrap();
        let tensors = ckpt.tensors(None);
        let dtypes: Vec<DType> = tensors.values().map(|t| t.dtype).collect();
        for dtype in DType::ALL {
            assert!(dtypes.contains(&dtype), "{fmt}: {dtype} missing");
        }
        // The same values in every float type, to the precision each holds.
        let f32s = tensors["f32"].to_f32();
        for (name, tol) in [("f64", 1e-6), ("f16", 0.1), ("bf16", 1.0)] {
            let other = tensors[name].to_f32();
            assert!(f32s.iter().zip(&other).all(|(a, b)| (a - b).abs() <= tol * a.abs().max(1.0)), "{name}");
        }
        assert_eq!(tensors["bool"].to_f32(), f32s.iter().map(|&x| f32::from(u8::from(x > 0.0))).collect::<Vec<_>>());
    }
}

#[test]
fn views_are_materialised_contiguous() {
    for fmt in ["zip", "legacy"] {
        let t = torchfile::load(fixture(&format!("{fmt}_views.pt"))).unwrap().tensors(None);
        let base: Vec<f32> = (0..24u8).map(f32::from).collect();
        assert_eq!(t["base"].to_f32(), base);
        assert_eq!(t["transposed"].shape, [6, 4]);
        assert_eq!(t["transposed"].to_f32()[..4], [0.0, 6.0, 12.0, 18.0]);
        assert_eq!(t["slice"].to_f32(), [8.0, 9.0, 10.0, 14.0, 15.0, 16.0]);
        assert_eq!(t["every_other"].to_f32(), [1.0, 4.0, 13.0, 16.0]);
        assert_eq!(t["flat_tail"].to_f32(), [20.0, 21.0, 22.0, 23.0]);
        assert_eq!(t["expanded"].to_f32(), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        assert!(t["scalar"].shape.is_empty());
        assert_eq!(t["scalar"].to_f32(), [3.5]);
        assert_eq!(t["long_scalar"].to_f64(), [7.0]);
        assert_eq!((t["empty"].shape.as_slice(), t["empty"].data.len()), ([0, 3].as_slice(), 0));
        assert_eq!(t["half_view"].to_f32(), [3.0, 4.0, 5.0, 6.0]);
    }
}

#[test]
fn nested_checkpoints_select_by_prefix_and_keep_metadata() {
    for fmt in ["zip", "legacy"] {
        let ckpt = torchfile::load(fixture(&format!("{fmt}_nested.pt"))).unwrap();
        let ema = ckpt.tensors(Some("ema"));
        let model = ckpt.require_tensors(Some("model")).unwrap();
        assert_eq!(ckpt.clone().into_tensors(Some("ema")), ema);
        assert_eq!(ckpt.tensors(Some("ema.")), ema);
        let names: Vec<&str> = ema.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "0.bias",
                "0.weight",
                "2.bias",
                "2.weight",
                "3.bias",
                "3.num_batches_tracked",
                "3.running_mean",
                "3.running_var",
                "3.weight"
            ]
        );
        assert_eq!(model.keys().collect::<Vec<_>>(), ema.keys().collect::<Vec<_>>());
        let halved: Vec<f32> = model["0.weight"].to_f32().iter().map(|x| x * 0.5).collect();
        assert_eq!(ema["0.weight"].to_f32(), halved);
        assert_eq!(model["3.num_batches_tracked"].dtype, DType::I64);
        assert_eq!(ckpt.get("step"), Some(&Value::Int(1234)));
        assert_eq!(ckpt.get("lr"), Some(&Value::Float(1.5e-4)));
        assert_eq!(ckpt.get("name"), Some(&Value::Str("tiny".into())));
        assert_eq!(ckpt.get("done"), Some(&Value::Bool(true)));
        assert_eq!(ckpt.get("nothing"), Some(&Value::None));
        assert_eq!(ckpt.get("big"), Some(&Value::Int(1 << 40)));
        assert_eq!(ckpt.get("negative"), Some(&Value::Int(-3)));
        assert_eq!(ckpt.get("config.depth"), Some(&Value::Int(2)));
        assert_eq!(ckpt.get("config.heads.1"), Some(&Value::Int(2)));
        assert_eq!(ckpt.get("config.ratio"), Some(&Value::Float(0.5)));
        assert!(matches!(ckpt.get("model.0.weight"), Some(Value::Tensor(t)) if t.shape == [3, 4]));
        assert!(matches!(ckpt.get("pair"), Some(Value::Tuple(items)) if items.len() == 2));
        assert_eq!(ckpt.get("missing"), None);
        // Adam's state dict: int keys, 0-d step tensors, tuples and None in param_groups.
        assert_eq!(ckpt.get("optimizer.param_groups.0.lr"), Some(&Value::Float(1e-3)));
        assert_eq!(
            ckpt.get("optimizer.param_groups.0.betas"),
            Some(&Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)]))
        );
        assert_eq!(ckpt.get("optimizer.param_groups.0.foreach"), Some(&Value::None));
        assert!(matches!(ckpt.get("optimizer.param_groups.0.params"), Some(Value::List(p)) if p.len() == 6));
        let adam = ckpt.tensors(Some("optimizer.state"));
        assert_eq!(adam["0.step"].to_f32(), [1.0]);
        assert!(adam["0.step"].shape.is_empty());
        assert_eq!(adam["0.exp_avg"].shape, [3, 4]);
        let err = ckpt.require_tensors(Some("ema_")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no tensors under `ema_`; the file's top-level entries are: ema, history, model, optimizer, pair",
                fixture(&format!("{fmt}_nested.pt")).display()
            )
        );
    }
}

#[test]
fn state_dicts_and_parameters_read_the_same() {
    for fmt in ["zip", "legacy"] {
        let sd = torchfile::load(fixture(&format!("{fmt}_state_dict.pt"))).unwrap().tensors(None);
        let params = torchfile::load(fixture(&format!("{fmt}_parameters.pt"))).unwrap().tensors(None);
        assert_eq!(sd, params, "{fmt}: state_dict() and state_dict(keep_vars=True) differ");
        assert!(
            matches!(torchfile::load(fixture(&format!("{fmt}_list.pt"))).unwrap().root(), Value::List(l) if l.len() == 2)
        );
    }
}

#[test]
fn malicious_pickles_are_refused_naming_the_global() {
    for (file, global) in [
        ("malicious_system.pt", "os.system"),
        ("malicious_eval.pt", "builtins.eval"),
        ("malicious_legacy.pt", "os.system"),
    ] {
        let err = torchfile::load(fixture(file)).unwrap_err();
        let ErrorKind::Pickle { problem: PickleProblem::ForbiddenGlobal(name), .. } = &err.kind else {
            panic!("{file}: {err}");
        };
        assert_eq!(name, global);
        let text = err.to_string();
        assert!(text.contains(file) && text.contains(&format!("`{global}` is not allowed")), "{text}");
    }
}

#[test]
fn a_torchscript_archive_is_named_as_such() {
    let err = torchfile::load(fixture("torchscript.pt")).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::NotTorch(_)), "{err}");
    assert!(err.to_string().contains("a TorchScript archive (torch.jit.save)"), "{err}");
}

#[test]
fn errors_name_the_file() {
    let err = torchfile::load(fixture("no_such_file.pt")).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Io(_)));
    assert!(err.to_string().contains("no_such_file.pt: cannot read the file"), "{err}");
    let err = torchfile::load(fixture("make_fixtures.py")).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::NotTorch(_)), "{err}");
}
