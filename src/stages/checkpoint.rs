//! The `checkpoint` kind's parameters (`stdlib/checkpoint.msnr`): a model artifact made
//! from a published weight file (a `torch.save` file or safetensors) and the facts a
//! state dict does not hold (the net, its target and schedule, the classes and the data's
//! shape). Checked here before anything runs: the net must fit the stated data. The
//! worker (`msnr_torch::stages::checkpoint`) matches the file's names and shapes strictly
//! against the net and writes the model as `train` does, so `sample` reads either alike.

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{ParamError, Reader, Shape, Source};
use super::train::{read_schedule, read_target};
use crate::diffusion::schedule::NamedSchedule;
use crate::diffusion::target::Target;
use crate::lang::codes;
use crate::nets::{check_net, NetParams};

/// The `checkpoint` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointParams {
    /// The weight file, or a folder holding exactly one (e.g. a download's output).
    pub weights: Source,
    /// The network the weights belong to.
    pub net: NetParams,
    /// What the network predicts.
    pub target: Target,
    /// The schedule it was trained with.
    pub schedule: NamedSchedule,
    /// Number of classes it is conditioned on (0: unconditional).
    pub classes: i64,
    /// Channels of its images or latents.
    pub channels: i64,
    /// Side of its square images or latents.
    pub size: i64,
    /// The dotted path of the state dict inside the file (`ema`, `state.model`); empty: the top level.
    pub entry: String,
    /// A prefix removed from every name that has it (`module.`, `model.`).
    pub strip: String,
}

impl KindParams for CheckpointParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let weights = r.source("weights");
        let net = NetParams::read(r, "net");
        let target = read_target(r);
        let schedule = read_schedule(r);
        let classes = r.int("classes", 0..);
        let channels = r.int("channels", 1..=64);
        let size = r.int("size", 1..=65_536);
        let entry = r.str("entry").map(|e| e.trim_end_matches('.').to_owned());
        let strip = r.str("strip").map(str::to_owned);
        if let (Some(net), Some(c), Some(s)) = (&net, channels, size) {
            check_fits(r, net, s, c);
        }
        Some(Self {
            weights: weights?,
            net: net?,
            target: target?,
            schedule: schedule?,
            classes: classes?,
            channels: channels?,
            size: size?,
            entry: entry?,
            strip: strip?,
        })
    }

    /// A model has no image shape for the checker.
    fn shape(&self, _r: &Reader<'_>) -> Shape {
        Shape::UNKNOWN
    }
}

/// The net must take `size` x `size` x `channels` inputs.
fn check_fits(r: &mut Reader<'_>, net: &NetParams, size: i64, channels: i64) {
    let (Ok(s), Ok(c)) = (u32::try_from(size), u32::try_from(channels)) else { return };
    if let Err((param, message)) = check_net(net, s, c) {
        let message = format!("{message} (the checkpoint's data: {channels}x{size}x{size})");
        let help = "state the net and the data shape the weights were trained with";
        r.fail::<()>(ParamError::new(param, message).with_help(help).with_code(codes::DATA_DOES_NOT_FIT_NET));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lang::Value;
    use crate::stages::check::defaults_for;

    fn read(overrides: &[(&str, Value)]) -> Result<CheckpointParams, Vec<ParamError>> {
        let mut params = defaults_for("checkpoint");
        params.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let none = |_: &str| Shape::UNKNOWN;
        let mut r = Reader::new(&params, &none, None);
        let got = CheckpointParams::read(&mut r);
        r.finish(got)
    }

    #[test]
    fn reads_the_seeds_xl_setup() {
        let p = read(&[
            ("channels", Value::Int(4)),
            ("size", Value::Int(32)),
            ("classes", Value::Int(1000)),
            ("entry", Value::Str("ema.".into())),
        ])
        .unwrap();
        assert_eq!((p.channels, p.size, p.classes, p.entry.as_str()), (4, 32, 1000, "ema"));
        assert_eq!(p.schedule, NamedSchedule::Cosine { steps: 1000 });
    }

    #[test]
    fn the_net_must_fit_the_stated_data() {
        let errors = read(&[("channels", Value::Int(3)), ("size", Value::Int(33))]).unwrap_err();
        assert_eq!(errors[0].param, "net.patch");
        assert!(errors[0].message.ends_with("(the checkpoint's data: 3x33x33)"), "{}", errors[0].message);
        let bad = read(&[("classes", Value::Int(-1)), ("channels", Value::Int(0))]).unwrap_err();
        let params: BTreeMap<&str, &str> = bad.iter().map(|e| (e.param.as_str(), e.message.as_str())).collect();
        assert!(params.contains_key("classes") && params.contains_key("channels"), "{params:?}");
    }
}
