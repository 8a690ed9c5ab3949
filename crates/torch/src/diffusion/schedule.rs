//! A discrete noise schedule's tables on a libtorch device. The schedule itself (beta
//! tables, `abar`, `alpha`, `sigma`, `SNR` in `f64`) is libtorch-free and lives in the
//! front-end crate ([`msnr::diffusion::schedule`]), where the checker validates it; this
//! module uploads its tables once and gathers them at timestep batches.

use tch::{Device, Kind, Tensor};

pub use msnr::diffusion::schedule::{Schedule, ScheduleError};

/// A value whose tables can be uploaded to a device once: a [`Schedule`] or a
/// [`FactorTable`](super::weighting::FactorTable).
pub trait OnDevice {
    /// What the upload gives.
    type Output;
    /// The tables as `f32` tensors on `device`.
    fn to_device(&self, device: Device) -> Self::Output;
}

impl OnDevice for Schedule {
    type Output = ScheduleTensors;

    /// The `alpha`, `sigma` and `SNR` tables as `f32` tensors on `device`, uploaded once so a
    /// training step gathers from them without a host-to-device copy.
    fn to_device(&self, device: Device) -> ScheduleTensors {
        ScheduleTensors {
            alpha: table(self.alpha(), device),
            sigma: table(self.sigma(), device),
            snr: table(self.snr(), device),
        }
    }
}

/// A schedule's tables as `f32` tensors on one device, gathered at timestep batches.
#[derive(Debug)]
pub struct ScheduleTensors {
    alpha: Tensor,
    sigma: Tensor,
    snr: Tensor,
}

impl ScheduleTensors {
    /// `alpha` at timesteps `t` (an `Int64` tensor on the same device), shape of `t`.
    pub fn alpha_at(&self, t: &Tensor) -> Tensor {
        gather(&self.alpha, t)
    }

    /// `sigma` at timesteps `t`, shape of `t`.
    pub fn sigma_at(&self, t: &Tensor) -> Tensor {
        gather(&self.sigma, t)
    }

    /// `SNR` at timesteps `t`, shape of `t`.
    pub fn snr_at(&self, t: &Tensor) -> Tensor {
        gather(&self.snr, t)
    }
}

/// `values` as a 1-D `f32` tensor on `device` (rounded from `f64` once).
pub(crate) fn table(values: &[f64], device: Device) -> Tensor {
    Tensor::from_slice(values).to_kind(Kind::Float).to_device(device)
}

/// `table[t]` elementwise, keeping `t`'s shape.
pub(crate) fn gather(table: &Tensor, t: &Tensor) -> Tensor {
    table.take(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::cast_possible_truncation)] // the f32 rounding is the point
    fn gathers_f32_tables_at_timesteps() {
        let s = Schedule::cosine(10).unwrap();
        let d = s.to_device(Device::Cpu);
        let t = Tensor::from_slice(&[0i64, 9, 3]);
        let got: Vec<f32> = Vec::try_from(d.sigma_at(&t)).unwrap();
        let want: Vec<f32> = [0, 9, 3].iter().map(|&i| s.sigma()[i] as f32).collect();
        assert_eq!(got, want);
    }
}
