//! From the language's `net` value (`vit { .. }` or `unet { .. }`) plus the data
//! facts to a network configuration. No libtorch: `msnr check` uses it.

use super::args::Args;
use super::error::ModelError;
use super::unet::UNetConfig;
use super::vit::ViTConfig;
use crate::lang::value::Value;

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

/// A resolved network: which architecture, with every hyper-parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum NetSpec {
    /// The seed paper's ViT.
    ViT(ViTConfig),
    /// The ADM UNet.
    UNet(UNetConfig),
}

impl NetSpec {
    /// Reads the `net` constructor value; its arguments and defaults are the stdlib's:
    /// `vit { depth = 12, width = 768, heads = 12, patch = 2 }` and `unet { channels = 128,
    /// mults = [1, 2, 2, 2], res_blocks = 2, attention = [16], heads = 4, dropout = 0.0,
    /// scale_shift = true }`. Does not validate: see [`NetSpec::validate`].
    ///
    /// # Errors
    /// [`ModelError::Invalid`] for an unknown network or an argument of the wrong type.
    pub fn from_value(net: &Value, ctx: &NetContext) -> Result<Self, ModelError> {
        match net {
            Value::Ctor { name, args } if name == "vit" => vit(&Args::new("net", args), ctx).map(Self::ViT),
            Value::Ctor { name, args } if name == "unet" => unet(&Args::new("net", args), ctx).map(Self::UNet),
            Value::Ctor { name, .. } => {
                Err(ModelError::invalid("net", format!("unknown network `{name}`; use vit or unet")))
            }
            other => Err(ModelError::invalid("net", format!("expected vit {{ .. }} or unet {{ .. }}, found {other}"))),
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
}

/// `vit { depth, width, heads, patch }`.
fn vit(a: &Args, ctx: &NetContext) -> Result<ViTConfig, ModelError> {
    Ok(ViTConfig {
        image_size: ctx.image_size,
        in_channels: ctx.channels,
        out_channels: ctx.channels,
        patch: a.int("patch", 2)?,
        width: a.int("width", 768)?,
        depth: a.int("depth", 12)?,
        heads: a.int("heads", 12)?,
        mlp_ratio: 4.0,
        num_classes: ctx.num_classes,
        steps: ctx.steps,
    })
}

/// `unet { channels, mults, res_blocks, attention, heads, dropout, scale_shift }`.
fn unet(a: &Args, ctx: &NetContext) -> Result<UNetConfig, ModelError> {
    Ok(UNetConfig {
        image_size: ctx.image_size,
        in_channels: ctx.channels,
        out_channels: ctx.channels,
        model_channels: a.int("channels", 128)?,
        channel_mult: a.ints("mults", &[1, 2, 2, 2])?,
        num_res_blocks: a.int("res_blocks", 2)?,
        attention_resolutions: a.ints("attention", &[16])?,
        num_heads: a.int("heads", 4)?,
        num_head_channels: None,
        dropout: a.float("dropout", 0.0)?,
        use_scale_shift_norm: a.bool("scale_shift", true)?,
        resblock_updown: false,
        conv_resample: true,
        num_classes: ctx.num_classes,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const MNIST: NetContext = NetContext { image_size: 28, channels: 1, num_classes: 10, steps: 1000 };

    fn ctor(name: &str, args: &[(&str, Value)]) -> Value {
        let args = args.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect::<BTreeMap<_, _>>();
        Value::Ctor { name: name.to_string(), args }
    }

    fn ints(v: &[i64]) -> Value {
        Value::List(v.iter().map(|i| Value::Int(*i)).collect())
    }

    #[test]
    fn vit_takes_its_arguments_and_the_data_facts() {
        let net = ctor("vit", &[("depth", Value::Int(6)), ("width", Value::Int(256)), ("patch", Value::Int(4))]);
        let NetSpec::ViT(cfg) = NetSpec::from_value(&net, &MNIST).unwrap() else { panic!("not a vit") };
        assert_eq!((cfg.depth, cfg.width, cfg.heads, cfg.patch), (6, 256, 12, 4));
        assert_eq!((cfg.image_size, cfg.in_channels, cfg.out_channels, cfg.num_classes), (28, 1, 1, 10));
        assert_eq!(NetSpec::ViT(cfg).validate().unwrap_err().into_param().0, "net.heads");
    }

    #[test]
    fn unet_takes_its_arguments() {
        let net = ctor(
            "unet",
            &[
                ("channels", Value::Int(64)),
                ("mults", ints(&[1, 2, 2])),
                ("attention", ints(&[7])),
                ("scale_shift", Value::Bool(false)),
            ],
        );
        let spec = NetSpec::from_value(&net, &MNIST).unwrap();
        let NetSpec::UNet(cfg) = &spec else { panic!("not a unet") };
        assert_eq!(
            (cfg.model_channels, cfg.channel_mult.clone(), cfg.use_scale_shift_norm),
            (64, vec![1, 2, 2], false)
        );
        spec.validate().unwrap();
    }

    #[test]
    fn unknown_networks_and_wrong_types_are_reported() {
        let e = NetSpec::from_value(&ctor("resnet", &[]), &MNIST).unwrap_err().into_param();
        assert_eq!(e, ("net".to_string(), "unknown network `resnet`; use vit or unet".to_string()));
        assert_eq!(NetSpec::from_value(&Value::Int(3), &MNIST).unwrap_err().into_param().0, "net");
        let bad = ctor("unet", &[("mults", Value::Int(2))]);
        assert_eq!(NetSpec::from_value(&bad, &MNIST).unwrap_err().into_param().0, "net.mults");
    }
}
