//! The front end's network check (`msnr check`): the same rules the worker applies
//! before building a network, without libtorch.

use super::spec::{NetContext, NetParams, NetSpec};

/// Checks that `net` can be built for square images of side `image_size` with
/// `channels` channels. On failure returns the parameter path (`net.patch`,
/// `net.mults`, ...) and a message saying what to change.
///
/// # Errors
/// The first rule `net` breaks, as (parameter path, message).
pub fn check_net(net: &NetParams, image_size: u32, channels: u32) -> Result<(), (String, String)> {
    // The class count and T do not constrain the architecture; any valid values do.
    let ctx = NetContext { image_size: image_size.into(), channels: channels.into(), num_classes: 0, steps: 1000 };
    NetSpec::new(net, &ctx).validate().map_err(super::ModelError::into_param)
}

/// Checks the rules of `net` that hold whatever the data's shape, for data whose shape is
/// known only at run time (an `images` folder): `unet { channels = 8 }` fails here, not
/// minutes later in the worker.
///
/// # Errors
/// The first such rule `net` breaks, as (parameter path, message).
pub fn check_net_widths(net: &NetParams) -> Result<(), (String, String)> {
    let ctx = NetContext { image_size: 0, channels: 0, num_classes: 0, steps: 1000 };
    NetSpec::new(net, &ctx).validate_widths().map_err(super::ModelError::into_param)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vit(patch: i64) -> NetParams {
        NetParams::Vit { depth: 12, width: 768, heads: 12, patch, time_rows: 0, null_class: true }
    }

    fn unet(heads: i64) -> NetParams {
        NetParams::Unet {
            channels: 128,
            mults: vec![1, 2, 2, 2],
            res_blocks: 2,
            attention: vec![16],
            heads,
            dropout: 0.0,
            scale_shift: true,
        }
    }

    #[test]
    fn accepts_the_defaults_on_their_data() {
        assert_eq!(check_net(&vit(2), 32, 4), Ok(()));
        assert_eq!(check_net(&unet(4), 64, 3), Ok(()));
    }

    #[test]
    fn names_the_offending_parameter() {
        assert_eq!(check_net(&vit(3), 32, 4).unwrap_err().0, "net.patch");
        assert_eq!(check_net(&unet(4), 28, 1).unwrap_err().0, "net.mults");
        assert_eq!(check_net(&unet(5), 32, 3).unwrap_err().0, "net.heads");
        assert_eq!(check_net(&vit(2), 0, 4).unwrap_err().0, "data.image_size");
    }

    #[test]
    fn the_shape_free_rules_need_no_data() {
        assert_eq!(check_net_widths(&unet(4)), Ok(()), "the attention size is a shape rule: not checked");
        let NetParams::Unet { mults, attention, heads, dropout, scale_shift, res_blocks, .. } = unet(4) else {
            unreachable!()
        };
        let narrow = NetParams::Unet { channels: 8, mults, attention, heads, dropout, scale_shift, res_blocks };
        let (param, message) = check_net_widths(&narrow).unwrap_err();
        assert_eq!(param, "net.channels");
        assert!(message.contains("8 is not a multiple of 32"), "{message}");
        let NetParams::Vit { depth, patch, time_rows, null_class, .. } = vit(2) else { unreachable!() };
        let odd = NetParams::Vit { depth, width: 768, heads: 7, patch, time_rows, null_class };
        assert_eq!(check_net_widths(&odd).unwrap_err().0, "net.heads");
    }
}
