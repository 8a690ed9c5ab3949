//! Trainable parameters and their gradients as views into two flat buffers, so the optimizer,
//! gradient clipping and EMA each run as a handful of large kernels instead of a loop over
//! tensors (tch's `nn::AdamW` loops; see the shared GPU notes). The same idea as apex's
//! flattened parameters and `PyTorch`'s `fused`/`foreach` optimizers.
//!
//! Each variable of the `VarStore` is re-pointed (`set_data`, Python's `p.data = view`) at its
//! slice of `data`. Gradients follow `PyTorch`'s `zero_grad(set_to_none=True)`:
//! [`FlatParams::clear_grads`] drops the variables' gradients and the flat `grad` buffer's
//! memory before the forward pass, so that neither occupies memory while the activations peak;
//! autograd then creates each gradient itself during backward (no accumulation kernels), and
//! [`FlatParams::attach_grads`] copies them into a fresh flat buffer and drops them again.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, TchError, Tensor};

/// Why parameters cannot be flattened, or a state file not read or written.
#[derive(Debug, thiserror::Error)]
pub enum FlatError {
    /// The store has no variable that requires a gradient.
    #[error("the model has no trainable parameters")]
    NoParameters,
    /// Flat buffers need one dtype and one device for all parameters.
    #[error("parameter `{name}` is {kind:?} on {device:?}, but `{first}` is {first_kind:?} on {first_device:?}")]
    Mixed {
        /// The parameter that differs.
        name: String,
        /// Its dtype.
        kind: Kind,
        /// Its device.
        device: Device,
        /// The first parameter.
        first: String,
        /// The first parameter's dtype.
        first_kind: Kind,
        /// The first parameter's device.
        first_device: Device,
    },
    /// A state file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What libtorch or safetensors reported.
        source: TchError,
    },
    /// A state file lacks a tensor or holds one of the wrong size.
    #[error("{path}: {message}")]
    BadState {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// One parameter's place in the flat buffers.
#[derive(Debug)]
struct Slot {
    name: String,
    offset: i64,
    shape: Vec<i64>,
    var: Tensor,
}

impl Slot {
    /// The number of elements.
    fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// This slot's view (with the parameter's shape) into a flat buffer.
    fn view(&self, flat: &Tensor) -> Tensor {
        flat.narrow(0, self.offset, self.numel()).view(self.shape.as_slice())
    }
}

/// The trainable variables of a `VarStore`, stored in one flat `data` buffer with a matching
/// flat `grad` buffer; layout: variables sorted by name, each contiguous.
#[derive(Debug)]
pub struct FlatParams {
    data: Tensor,
    grad: Tensor,
    slots: Vec<Slot>,
}

impl FlatParams {
    /// Flattens the trainable variables of `vs`. Call it after the store has reached its
    /// final device and dtype (`VarStore::set_device`/`set_kind` would re-point them again);
    /// loading weights afterwards (`VarStore::load`) copies in place and keeps the layout.
    ///
    /// # Errors
    /// When there is no trainable variable, or they differ in dtype or device.
    pub fn new(vs: &VarStore) -> Result<Self, FlatError> {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (first, first_var) = named.first().ok_or(FlatError::NoParameters)?;
        let (kind, device) = (first_var.kind(), first_var.device());
        if let Some((name, var)) = named.iter().find(|(_, v)| v.kind() != kind || v.device() != device) {
            let (name, first) = (name.clone(), first.clone());
            return Err(FlatError::Mixed {
                name,
                kind: var.kind(),
                device: var.device(),
                first,
                first_kind: kind,
                first_device: device,
            });
        }
        let mut offset = 0;
        let slots: Vec<Slot> = named
            .into_iter()
            .map(|(name, var)| {
                let slot = Slot { name, offset, shape: var.size(), var };
                offset += slot.numel();
                slot
            })
            .collect();
        let data = Tensor::zeros([offset], (kind, device));
        let grad = Tensor::zeros([offset], (kind, device));
        let flat = Self { data, grad, slots };
        flat.repoint_data();
        Ok(flat)
    }

    /// Copies each variable into its slice of `data` and re-points the variable there.
    fn repoint_data(&self) {
        tch::no_grad(|| {
            for slot in &self.slots {
                let mut view = slot.view(&self.data);
                view.copy_(&slot.var);
                slot.var.shallow_clone().set_data(&view);
            }
        });
    }

    /// Copies the gradients of the last backward into a fresh flat `grad` buffer (one copy per
    /// variable; a variable that received none gets zeros) and drops the variables' own, so only
    /// the flat buffer holds them. Call after each backward, before reading `grad`.
    pub fn attach_grads(&self) {
        tch::no_grad(|| {
            let fresh = Tensor::empty([self.numel()], (self.data.kind(), self.data.device()));
            self.grad.shallow_clone().set_data(&fresh);
            for slot in &self.slots {
                let grad = slot.var.grad();
                let mut view = slot.view(&self.grad);
                if grad.defined() {
                    view.copy_(&grad);
                    crate::shim::clear_grad(&slot.var);
                } else {
                    let _ = view.zero_();
                }
            }
        });
    }

    /// A fresh zeroed flat gradient buffer (returned), for gradients that arrive slot by slot
    /// while the backward pass runs (data-parallel buckets, see `shim::reducer`), in place of
    /// [`Self::attach_grads`]'s copy after it.
    pub fn zeroed_grad(&self) -> &Tensor {
        tch::no_grad(|| {
            let fresh = Tensor::zeros([self.numel()], (self.data.kind(), self.data.device()));
            self.grad.shallow_clone().set_data(&fresh);
        });
        &self.grad
    }

    /// Each variable with its offset and element count in the flat buffers, in layout order.
    #[must_use]
    pub fn layout(&self) -> Vec<(&Tensor, i64, i64)> {
        self.slots.iter().map(|s| (&s.var, s.offset, s.numel())).collect()
    }

    /// Drops every gradient, the variables' and the flat buffer's memory (as `PyTorch`'s
    /// `zero_grad(set_to_none=True)`); call before the forward pass whose backward
    /// [`Self::attach_grads`] will collect.
    pub fn clear_grads(&self) {
        for slot in &self.slots {
            crate::shim::clear_grad(&slot.var);
        }
        tch::no_grad(|| {
            self.grad.shallow_clone().set_data(&Tensor::empty([0], (self.data.kind(), self.data.device())));
        });
    }

    /// Scales gradients so their total 2-norm is at most `max_norm`, as
    /// `torch.nn.utils.clip_grad_norm_`: `coef = min(max_norm / (norm + 1e-6), 1)`, applied
    /// always (multiplying by 1 when below), without a host sync; `max_norm / x` as `PyTorch`'s
    /// `__rtruediv__` evaluates it, `reciprocal(x) * max_norm`. Returns the norm before
    /// clipping as a 0-d tensor. Call after [`Self::attach_grads`].
    pub fn clip_grad_norm(&self, max_norm: f64) -> Tensor {
        tch::no_grad(|| {
            let total = self.grad.norm();
            let coef = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
            let _ = self.grad.shallow_clone().g_mul_(&coef);
            total
        })
    }

    /// The flat parameter buffer (writes through to the model's variables).
    pub fn data(&self) -> &Tensor {
        &self.data
    }

    /// The flat gradient buffer.
    pub fn grad(&self) -> &Tensor {
        &self.grad
    }

    /// The total number of parameters.
    #[must_use]
    pub fn numel(&self) -> i64 {
        self.data.numel().try_into().unwrap_or(i64::MAX)
    }

    /// The names of the flattened variables, in layout order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// `flat` (a buffer laid out like `data`, e.g. an EMA copy) split into named tensors with
    /// the variables' shapes, ready for `Tensor::write_safetensors` or `VarStore` loading.
    #[must_use]
    pub fn named_views(&self, flat: &Tensor) -> Vec<(String, Tensor)> {
        self.slots.iter().map(|s| (s.name.clone(), s.view(flat))).collect()
    }
}

/// Writes named tensors to a safetensors file.
///
/// # Errors
/// [`FlatError::Io`] naming the file.
pub(crate) fn write_state(path: &Path, tensors: &[(&str, Tensor)]) -> Result<(), FlatError> {
    let cpu: Vec<(&str, Tensor)> = tensors.iter().map(|(n, t)| (*n, t.to_device(Device::Cpu))).collect();
    Tensor::write_safetensors(&cpu, path).map_err(|source| FlatError::Io { path: path.display().to_string(), source })
}

/// Reads the tensors named in `wanted` from a safetensors file, each checked to hold `numel`
/// elements (`None`: any size), moved to `device`.
///
/// # Errors
/// [`FlatError::Io`] or [`FlatError::BadState`] naming the file and the tensor.
pub(crate) fn read_state<const N: usize>(
    path: &Path,
    wanted: [(&str, Option<i64>); N],
    device: Device,
) -> Result<[Tensor; N], FlatError> {
    let display = path.display().to_string();
    let mut tensors =
        Tensor::read_safetensors(path).map_err(|source| FlatError::Io { path: display.clone(), source })?;
    let bad = |message: String| FlatError::BadState { path: display.clone(), message };
    wanted
        .iter()
        .map(|(name, numel)| {
            let i = tensors.iter().position(|(n, _)| n == name).ok_or_else(|| bad(format!("no tensor `{name}`")))?;
            let tensor = tensors.swap_remove(i).1;
            let found = i64::try_from(tensor.numel()).unwrap_or(i64::MAX);
            match numel {
                Some(n) if *n != found => Err(bad(format!("tensor `{name}` has {found} elements, the model has {n}"))),
                _ => Ok(tensor.to_device(device)),
            }
        })
        .collect::<Result<Vec<_>, _>>()?
        .try_into()
        .map_err(|_| bad("tensor count differs from the request".into()))
}

/// A step counter as a 1-element `Int64` tensor, for state files.
pub(crate) fn step_tensor(step: u64) -> Tensor {
    Tensor::from_slice(&[i64::try_from(step).unwrap_or(i64::MAX)])
}

/// The step counter read back from [`step_tensor`]'s tensor.
pub(crate) fn step_value(tensor: &Tensor) -> u64 {
    u64::try_from(tensor.int64_value(&[0])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, Module};

    use super::*;

    fn model() -> (VarStore, nn::Linear) {
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "l", 3, 2, nn::LinearConfig::default());
        (vs, lin)
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact values are the point
    fn variables_become_views_of_the_flat_buffer() {
        let (vs, lin) = model();
        let before = Vec::<f32>::try_from(lin.ws.flatten(0, -1)).unwrap();
        let flat = FlatParams::new(&vs).unwrap();
        assert_eq!(flat.names().collect::<Vec<_>>(), ["l.bias", "l.weight"]);
        assert_eq!(Vec::<f32>::try_from(lin.ws.flatten(0, -1)).unwrap(), before, "values kept");
        tch::no_grad(|| {
            let _ = flat.data().shallow_clone().fill_(0.5);
        });
        assert_eq!(lin.ws.mean(Kind::Float).double_value(&[]), 0.5, "writes reach the model");
    }

    #[test]
    fn each_backwards_gradients_land_in_the_flat_buffer_alone() {
        let (vs, lin) = model();
        let flat = FlatParams::new(&vs).unwrap();
        let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        for _ in 0..3 {
            flat.clear_grads();
            assert_eq!(flat.grad().numel(), 0, "no gradient memory during the forward pass");
            lin.forward(&x).sum(Kind::Float).backward();
            flat.attach_grads();
            assert_eq!(Vec::<f32>::try_from(flat.grad()).unwrap(), [4.0; 8]);
            assert!(!lin.ws.grad().defined() && !lin.bs.as_ref().unwrap().grad().defined(), "only the flat copy");
        }
        // A variable without a gradient (not in the graph) gets zeros.
        flat.clear_grads();
        lin.ws.sum(Kind::Float).backward();
        flat.attach_grads();
        assert_eq!(Vec::<f32>::try_from(flat.grad()).unwrap(), [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn clips_like_torch() {
        let (vs, _) = model();
        let flat = FlatParams::new(&vs).unwrap();
        tch::no_grad(|| {
            let _ = flat.grad().shallow_clone().fill_(2.0);
        });
        let norm = flat.clip_grad_norm(1.0).double_value(&[]);
        assert!((norm - 2.0 * 8f64.sqrt()).abs() < 1e-5);
        assert!((flat.grad().norm().double_value(&[]) - 1.0).abs() < 1e-5);
        let again = flat.clip_grad_norm(10.0).double_value(&[]);
        assert!((flat.grad().norm().double_value(&[]) - again).abs() < 1e-7, "below max_norm: unchanged");
    }

    #[test]
    fn rejects_a_store_without_trainable_variables() {
        let vs = VarStore::new(Device::Cpu);
        assert!(matches!(FlatParams::new(&vs), Err(FlatError::NoParameters)));
    }
}
