//! The FID fixture script's weight and input formula (`tests/fixtures/fid/make_fixtures.py`:
//! `fnv1a64`, `splitmix64`, `uniform`, `scale`), shared by the parity tests and the
//! `inception_cpu` benchmark: `u(name, i) = (splitmix64(fnv1a64(name) + i) >> 40) / 2^23 - 1`.

#![allow(dead_code)] // the tests and the benchmark each use a part

use tch::Tensor;

/// FNV-1a, 64 bits, of the name's bytes.
pub fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// splitmix64's finalizer.
fn splitmix64(x: u64) -> u64 {
    let z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hashes of elements `0..n` of tensor `name`.
pub fn hashes(name: &str, n: usize) -> impl Iterator<Item = u64> {
    let base = fnv1a64(name);
    (0..n as u64).map(move |i| splitmix64(base.wrapping_add(i)))
}

/// `u(name, i)` for `i < n`, in [-1, 1), exact in f32.
#[allow(clippy::cast_precision_loss)] // 24-bit integers
pub fn uniform(name: &str, n: usize) -> impl Iterator<Item = f64> {
    hashes(name, n).map(|h| (h >> 40) as f64 / f64::from(1u32 << 23) - 1.0)
}

#[allow(clippy::cast_precision_loss)]
fn scale(name: &str, shape: &[i64], u: f64) -> f64 {
    let fan_in = shape[1..].iter().product::<i64>() as f64;
    match name {
        _ if name.ends_with("conv.weight") => u * (6.0 / fan_in).sqrt(),
        _ if name.ends_with("bn.weight") => 1.0 + 0.25 * u,
        _ if name.ends_with("bn.running_var") => 1.0 + 0.5 * u,
        _ if name.ends_with("bn.bias") || name.ends_with("bn.running_mean") || name == "fc.bias" => 0.1 * u,
        "fc.weight" => u * (3.0 / fan_in).sqrt(),
        _ => panic!("no formula for {name}"),
    }
}

/// Parameter `name` of the given shape, rounded to f32.
#[allow(clippy::cast_possible_truncation)] // rounding to f32 is the point
pub fn tensor(name: &str, shape: &[i64]) -> Tensor {
    let n = numel(shape);
    let values: Vec<f32> = uniform(name, n).map(|u| scale(name, shape, u) as f32).collect();
    Tensor::from_slice(&values).view(shape)
}

/// A block input in [0, 1).
#[allow(clippy::cast_possible_truncation)]
pub fn input(name: &str, shape: &[i64]) -> Tensor {
    let n = numel(shape);
    let values: Vec<f32> = uniform(name, n).map(|u| f64::midpoint(u, 1.0) as f32).collect();
    Tensor::from_slice(&values).view(shape)
}

/// uint8 images: the top 8 bits of the hashes of `images`.
#[allow(clippy::cast_possible_truncation)]
pub fn images(shape: &[i64]) -> Tensor {
    let n = numel(shape);
    let values: Vec<u8> = hashes("images", n).map(|h| (h >> 56) as u8).collect();
    Tensor::from_slice(&values).view(shape)
}

fn numel(shape: &[i64]) -> usize {
    usize::try_from(shape.iter().product::<i64>()).expect("a shape")
}

/// Sets every variable of `vs` (a `FidInceptionV3`'s) to the formula's values.
pub fn fill(vs: &tch::nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            var.copy_(&tensor(&name, &var.size()));
        }
    });
}
