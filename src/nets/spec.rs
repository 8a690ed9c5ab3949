//! The language's `net` value (`vit { .. }`, `unet { .. }`) as typed parameters, and
//! from those plus the data's facts to a network configuration. No libtorch: `msnr
//! check` uses it. The arguments' defaults are the stdlib's (`stdlib/train.msnr`).

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::unet::UNetConfig;
use super::vit::ViTConfig;
use crate::stages::params::{ParamError, Reader};

/// What the data and the schedule fix about a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetContext {
    /// Side of the square training images (or latents).
    pub image_size: i64,
    /// Their channels (input and output of the denoiser).
    pub channels: i64,
    /// Number of classes in the labels; 0 = unconditional.
    pub num_classes: i64,
    /// Discrete timesteps T of the schedule (the ViT learns one embedding per step).
    pub steps: i64,
}

/// The `net` parameter: an architecture and its hyper-parameters as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetParams {
    /// `vit { depth, width, heads, patch, time_rows, null_class }`.
    Vit {
        /// Transformer blocks.
        depth: i64,
        /// Token width.
        width: i64,
        /// Attention heads.
        heads: i64,
        /// Patch side.
        patch: i64,
        /// Rows of the timestep-embedding table; 0: one per timestep (T).
        #[serde(default)]
        time_rows: i64,
        /// Whether a conditional net has the null label's class row.
        #[serde(default = "yes")]
        null_class: bool,
    },
    /// `unet { channels, mults, res_blocks, attention, heads, dropout, scale_shift }`.
    Unet {
        /// Channels at the first resolution.
        channels: i64,
        /// Channel multiplier per resolution.
        mults: Vec<i64>,
        /// Residual blocks per resolution.
        res_blocks: i64,
        /// Feature-map sides with self-attention.
        attention: Vec<i64>,
        /// Attention heads.
        heads: i64,
        /// Dropout in the residual blocks.
        dropout: f64,
        /// FiLM conditioning.
        scale_shift: bool,
    },
}

impl NetParams {
    /// Reads parameter `name` (a `vit { .. }` or `unet { .. }` value). Ranges are checked
    /// by [`NetSpec::validate`] once the data is known.
    pub fn read(r: &mut Reader<'_>, name: &'static str) -> Option<Self> {
        let c = r.ctor(name)?;
        match c.name {
            "vit" => {
                let (depth, width) = (r.arg_int(c, "depth", ..), r.arg_int(c, "width", ..));
                let (heads, patch) = (r.arg_int(c, "heads", ..), r.arg_int(c, "patch", ..));
                let (time_rows, null_class) = (r.arg_int(c, "time_rows", 0..), r.arg_bool(c, "null_class"));
                Some(Self::Vit {
                    depth: depth?,
                    width: width?,
                    heads: heads?,
                    patch: patch?,
                    time_rows: time_rows?,
                    null_class: null_class?,
                })
            }
            "unet" => {
                let (channels, mults) = (r.arg_int(c, "channels", ..), r.arg_ints(c, "mults"));
                let (res_blocks, attention) = (r.arg_int(c, "res_blocks", ..), r.arg_ints(c, "attention"));
                let (heads, dropout) = (r.arg_int(c, "heads", ..), r.arg_float(c, "dropout", ..));
                let scale_shift = r.arg_bool(c, "scale_shift");
                Some(Self::Unet {
                    channels: channels?,
                    mults: mults?,
                    res_blocks: res_blocks?,
                    attention: attention?,
                    heads: heads?,
                    dropout: dropout?,
                    scale_shift: scale_shift?,
                })
            }
            other => r.fail(ParamError::new(name, format!("unknown network `{other}`; use vit or unet"))),
        }
    }
}

/// `serde`'s default for [`NetParams::Vit`]'s `null_class`: today's net has the row.
fn yes() -> bool {
    true
}

/// A resolved network: which architecture, with every hyper-parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum NetSpec {
    /// The seed paper's ViT.
    ViT(ViTConfig),
    /// The ADM UNet.
    UNet(UNetConfig),
}

impl NetSpec {
    /// The network `net` describes for data `ctx`. Does not validate: see [`NetSpec::validate`].
    #[must_use]
    pub fn new(net: &NetParams, ctx: &NetContext) -> Self {
        match net.clone() {
            NetParams::Vit { depth, width, heads, patch, time_rows, null_class } => Self::ViT(ViTConfig {
                image_size: ctx.image_size,
                in_channels: ctx.channels,
                out_channels: ctx.channels,
                patch,
                width,
                depth,
                heads,
                mlp_ratio: 4.0,
                num_classes: ctx.num_classes,
                steps: ctx.steps,
                time_rows: (time_rows > 0).then_some(time_rows),
                null_class,
            }),
            NetParams::Unet { channels, mults, res_blocks, attention, heads, dropout, scale_shift } => {
                Self::UNet(UNetConfig {
                    image_size: ctx.image_size,
                    in_channels: ctx.channels,
                    out_channels: ctx.channels,
                    model_channels: channels,
                    channel_mult: mults,
                    num_res_blocks: res_blocks,
                    attention_resolutions: attention,
                    num_heads: heads,
                    num_head_channels: None,
                    dropout,
                    use_scale_shift_norm: scale_shift,
                    resblock_updown: false,
                    conv_resample: true,
                    num_classes: ctx.num_classes,
                })
            }
        }
    }

    /// Checks that the network can be built for its data.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the first parameter that rules the network out.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            Self::ViT(cfg) => cfg.validate(),
            Self::UNet(cfg) => cfg.validate(),
        }
    }

    /// The rules that hold whatever the data's shape (`validate` checks them too).
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the first `net.*` parameter that rules the network out.
    pub fn validate_widths(&self) -> Result<(), ModelError> {
        match self {
            Self::ViT(cfg) => cfg.validate_widths(),
            Self::UNet(cfg) => cfg.validate_widths(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lang::Value;
    use crate::stages::check::defaults_for;
    use crate::stages::params::Shape;

    const MNIST: NetContext = NetContext { image_size: 28, channels: 1, num_classes: 10, steps: 1000 };

    /// `name { args }` with the stdlib's defaults for the arguments not given, read as `net`.
    fn read(name: &str, args: &[(&str, Value)]) -> Result<NetParams, Vec<ParamError>> {
        let Value::Ctor { args: mut all, .. } = net_default(name) else { unreachable!() };
        all.extend(args.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let params = BTreeMap::from([("net".to_owned(), Value::Ctor { name: name.into(), args: all })]);
        let none = |_: &str| Shape::UNKNOWN;
        let mut r = Reader::new(&params, &none, None);
        let got = NetParams::read(&mut r, "net");
        r.finish(got)
    }

    /// The stdlib's `vit {}` or `unet {}` with every default.
    fn net_default(name: &str) -> Value {
        let mut train = defaults_for("train");
        let Value::Ctor { args, .. } = train.remove("net").unwrap() else { unreachable!() };
        if name == "vit" {
            return Value::Ctor { name: name.into(), args };
        }
        let unet = crate::lang::stdlib().family("net").unwrap().variant("unet").unwrap();
        let args = unet.params.iter().map(|p| (p.name.clone(), p.default.clone().unwrap())).collect();
        Value::Ctor { name: name.into(), args }
    }

    #[test]
    fn vit_takes_its_arguments_and_the_data_facts() {
        let net = read("vit", &[("depth", Value::Int(6)), ("width", Value::Int(256)), ("patch", Value::Int(4))]);
        let NetSpec::ViT(cfg) = NetSpec::new(&net.unwrap(), &MNIST) else { panic!("not a vit") };
        assert_eq!((cfg.depth, cfg.width, cfg.heads, cfg.patch), (6, 256, 12, 4));
        assert_eq!((cfg.image_size, cfg.in_channels, cfg.out_channels, cfg.num_classes), (28, 1, 1, 10));
        assert_eq!(NetSpec::ViT(cfg).validate().unwrap_err().into_param().0, "net.heads");
    }

    #[test]
    fn vit_takes_the_seeds_table_shapes() {
        let NetSpec::ViT(today) = NetSpec::new(&read("vit", &[]).unwrap(), &MNIST) else { panic!("not a vit") };
        assert_eq!((today.time_table_rows(), today.class_rows()), (1000, 11));
        let seed = read("vit", &[("time_rows", Value::Int(4000)), ("null_class", Value::Bool(false))]);
        let NetSpec::ViT(cfg) = NetSpec::new(&seed.unwrap(), &MNIST) else { panic!("not a vit") };
        assert_eq!((cfg.time_table_rows(), cfg.class_rows(), cfg.null_label()), (4000, 10, None));
        assert_eq!(read("vit", &[("time_rows", Value::Int(-1))]).unwrap_err()[0].param, "net.time_rows");
    }

    #[test]
    fn unet_takes_its_arguments() {
        let ints = |v: &[i64]| Value::List(v.iter().map(|i| Value::Int(*i)).collect());
        let args = [
            ("channels", Value::Int(64)),
            ("mults", ints(&[1, 2, 2])),
            ("attention", ints(&[7])),
            ("scale_shift", Value::Bool(false)),
        ];
        let spec = NetSpec::new(&read("unet", &args).unwrap(), &MNIST);
        let NetSpec::UNet(cfg) = &spec else { panic!("not a unet") };
        assert_eq!(
            (cfg.model_channels, cfg.channel_mult.clone(), cfg.use_scale_shift_norm),
            (64, vec![1, 2, 2], false)
        );
        spec.validate().unwrap();
    }

    #[test]
    fn unknown_networks_and_wrong_types_are_reported() {
        let e = read("resnet", &[]).unwrap_err();
        assert_eq!((e[0].param.as_str(), e[0].message.as_str()), ("net", "unknown network `resnet`; use vit or unet"));
        let bad = read("unet", &[("mults", Value::Int(2))]).unwrap_err();
        assert_eq!(bad[0].param, "net.mults");
    }
}
