//! The front end's network check (`msnr check`): the same rules the worker applies
//! before building a network, without libtorch.

use super::spec::{NetContext, NetSpec};
use crate::lang::value::Value;

/// Checks that `net` (a `vit { .. }` or `unet { .. }` value) can be built for square
/// images of side `image_size` with `channels` channels. On failure returns the
/// parameter path (`net.patch`, `net.mults`, ...) and a message saying what to change.
///
/// # Errors
/// The first rule `net` breaks, as (parameter path, message).
pub fn check_net(net: &Value, image_size: u32, channels: u32) -> Result<(), (String, String)> {
    // The class count and T do not constrain the architecture; any valid values do.
    let ctx = NetContext { image_size: image_size.into(), channels: channels.into(), num_classes: 0, steps: 1000 };
    NetSpec::from_value(net, &ctx).and_then(|spec| spec.validate()).map_err(super::ModelError::into_param)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn net(name: &str, args: &[(&str, i64)]) -> Value {
        let args = args.iter().map(|(k, v)| ((*k).to_string(), Value::Int(*v))).collect::<BTreeMap<_, _>>();
        Value::Ctor { name: name.to_string(), args }
    }

    #[test]
    fn accepts_the_defaults_on_their_data() {
        assert_eq!(check_net(&net("vit", &[]), 32, 4), Ok(()));
        assert_eq!(check_net(&net("unet", &[]), 64, 3), Ok(()));
    }

    #[test]
    fn names_the_offending_parameter() {
        assert_eq!(check_net(&net("vit", &[("patch", 3)]), 32, 4).unwrap_err().0, "net.patch");
        assert_eq!(check_net(&net("unet", &[]), 28, 1).unwrap_err().0, "net.mults");
        assert_eq!(check_net(&net("unet", &[("heads", 5)]), 32, 3).unwrap_err().0, "net.heads");
        assert_eq!(check_net(&net("vit", &[]), 0, 4).unwrap_err().0, "data.image_size");
    }
}
