//! The loss factors of a weighting on a libtorch device. The weightings themselves
//! (Min-SNR-gamma and its peers, their x0-space weights and the factor on each target's
//! MSE) are libtorch-free and live in the front-end crate ([`msnr::diffusion::weighting`]).

use tch::{Device, Tensor};

pub use msnr::diffusion::weighting::{FactorTable, InvalidGamma, Weighting};

use super::schedule::{table, OnDevice};

impl OnDevice for FactorTable {
    type Output = Tensor;

    /// The factors as a 1-D `f32` tensor on `device`, for [`super::loss::loss`].
    fn to_device(&self, device: Device) -> Tensor {
        table(self.values(), device)
    }
}
