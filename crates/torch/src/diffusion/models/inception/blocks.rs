//! The mixed blocks of pytorch-fid's FID Inception-v3: torchvision's `InceptionB` and
//! `InceptionD` as they are, and pytorch-fid's patched `FIDInceptionA`, `FIDInceptionC`,
//! `FIDInceptionE_1` and `FIDInceptionE_2` (`pytorch_fid/inception.py`), whose pooling
//! branch follows TensorFlow's graph: an average pool that leaves the zero padding out
//! of its count, or (in the last block) a max pool. Field names are the checkpoint's.

use tch::{nn, Tensor};

use super::BasicConv2d;

/// The pooling of a block's `branch_pool` before its 1x1 convolution (3x3, stride 1, pad 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchPool {
    /// `F.avg_pool2d(..., count_include_pad=False)`: pytorch-fid's patch of torchvision's
    /// average pool, as TensorFlow averages only the pixels inside the image.
    Avg,
    /// `F.max_pool2d(...)`: `FIDInceptionE_2` (`Mixed_7c`) only.
    Max,
}

impl BranchPool {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Self::Avg => x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None),
            Self::Max => x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false),
        }
    }
}

/// torchvision's stride-2 reduction pool of `InceptionB`/`InceptionD`: `F.max_pool2d(x, 3, 2)`.
fn reduce_pool(x: &Tensor) -> Tensor {
    x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)
}

/// `FIDInceptionA(in_channels, pool_features)` (`Mixed_5b`..`Mixed_5d`):
/// 64 + 64 + 96 + `pool_features` output channels.
#[derive(Debug)]
#[allow(missing_docs)] // fields are the checkpoint's branch names
pub struct FidInceptionA {
    pub branch1x1: BasicConv2d,
    pub branch5x5_1: BasicConv2d,
    pub branch5x5_2: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl FidInceptionA {
    /// The block under `vs` (e.g. `Mixed_5b`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, pool_features: i64) -> Self {
        Self {
            branch1x1: BasicConv2d::square(&(vs / "branch1x1"), cin, 64, 1, 1, 0),
            branch5x5_1: BasicConv2d::square(&(vs / "branch5x5_1"), cin, 48, 1, 1, 0),
            branch5x5_2: BasicConv2d::square(&(vs / "branch5x5_2"), 48, 64, 5, 1, 2),
            branch3x3dbl_1: BasicConv2d::square(&(vs / "branch3x3dbl_1"), cin, 64, 1, 1, 0),
            branch3x3dbl_2: BasicConv2d::square(&(vs / "branch3x3dbl_2"), 64, 96, 3, 1, 1),
            branch3x3dbl_3: BasicConv2d::square(&(vs / "branch3x3dbl_3"), 96, 96, 3, 1, 1),
            branch_pool: BasicConv2d::square(&(vs / "branch_pool"), cin, pool_features, 1, 1, 0),
        }
    }

    /// `FIDInceptionA.forward`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let b5 = self.branch5x5_2.forward(&self.branch5x5_1.forward(x));
        let b3 = self.branch3x3dbl_1.forward(x);
        let b3 = self.branch3x3dbl_3.forward(&self.branch3x3dbl_2.forward(&b3));
        let pool = self.branch_pool.forward(&BranchPool::Avg.apply(x));
        Tensor::cat(&[self.branch1x1.forward(x), b5, b3, pool], 1)
    }
}

/// torchvision's `InceptionB(in_channels)` (`Mixed_6a`): a stride-2 reduction,
/// 384 + 96 + `in_channels` output channels.
#[derive(Debug)]
#[allow(missing_docs)] // fields are the checkpoint's branch names
pub struct InceptionB {
    pub branch3x3: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    /// The block under `vs` (`Mixed_6a`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64) -> Self {
        Self {
            branch3x3: BasicConv2d::square(&(vs / "branch3x3"), cin, 384, 3, 2, 0),
            branch3x3dbl_1: BasicConv2d::square(&(vs / "branch3x3dbl_1"), cin, 64, 1, 1, 0),
            branch3x3dbl_2: BasicConv2d::square(&(vs / "branch3x3dbl_2"), 64, 96, 3, 1, 1),
            branch3x3dbl_3: BasicConv2d::square(&(vs / "branch3x3dbl_3"), 96, 96, 3, 2, 0),
        }
    }

    /// `InceptionB.forward`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let b3 = self.branch3x3dbl_1.forward(x);
        let b3 = self.branch3x3dbl_3.forward(&self.branch3x3dbl_2.forward(&b3));
        Tensor::cat(&[self.branch3x3.forward(x), b3, reduce_pool(x)], 1)
    }
}

/// `FIDInceptionC(in_channels, channels_7x7)` (`Mixed_6b`..`Mixed_6e`): factorized 7x7
/// convolutions (1x7 then 7x1), 4 x 192 output channels.
#[derive(Debug)]
#[allow(missing_docs)] // fields are the checkpoint's branch names
pub struct FidInceptionC {
    pub branch1x1: BasicConv2d,
    pub branch7x7_1: BasicConv2d,
    pub branch7x7_2: BasicConv2d,
    pub branch7x7_3: BasicConv2d,
    pub branch7x7dbl_1: BasicConv2d,
    pub branch7x7dbl_2: BasicConv2d,
    pub branch7x7dbl_3: BasicConv2d,
    pub branch7x7dbl_4: BasicConv2d,
    pub branch7x7dbl_5: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl FidInceptionC {
    /// The block under `vs` (e.g. `Mixed_6b`), with `c7` channels inside its 7x7 branches.
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, c7: i64) -> Self {
        let (row, col) = (([1, 7], [0, 3]), ([7, 1], [3, 0]));
        let conv = |name: &str, cin, cout, (k, pad): ([i64; 2], [i64; 2])| {
            BasicConv2d::new(&(vs / name), cin, cout, k, 1, pad)
        };
        Self {
            branch1x1: BasicConv2d::square(&(vs / "branch1x1"), cin, 192, 1, 1, 0),
            branch7x7_1: BasicConv2d::square(&(vs / "branch7x7_1"), cin, c7, 1, 1, 0),
            branch7x7_2: conv("branch7x7_2", c7, c7, row),
            branch7x7_3: conv("branch7x7_3", c7, 192, col),
            branch7x7dbl_1: BasicConv2d::square(&(vs / "branch7x7dbl_1"), cin, c7, 1, 1, 0),
            branch7x7dbl_2: conv("branch7x7dbl_2", c7, c7, col),
            branch7x7dbl_3: conv("branch7x7dbl_3", c7, c7, row),
            branch7x7dbl_4: conv("branch7x7dbl_4", c7, c7, col),
            branch7x7dbl_5: conv("branch7x7dbl_5", c7, 192, row),
            branch_pool: BasicConv2d::square(&(vs / "branch_pool"), cin, 192, 1, 1, 0),
        }
    }

    /// `FIDInceptionC.forward`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let b7 = self.branch7x7_1.forward(x);
        let b7 = self.branch7x7_3.forward(&self.branch7x7_2.forward(&b7));
        let d = self.branch7x7dbl_1.forward(x);
        let d = self.branch7x7dbl_3.forward(&self.branch7x7dbl_2.forward(&d));
        let d = self.branch7x7dbl_5.forward(&self.branch7x7dbl_4.forward(&d));
        let pool = self.branch_pool.forward(&BranchPool::Avg.apply(x));
        Tensor::cat(&[self.branch1x1.forward(x), b7, d, pool], 1)
    }
}

/// torchvision's `InceptionD(in_channels)` (`Mixed_7a`): a stride-2 reduction,
/// 320 + 192 + `in_channels` output channels.
#[derive(Debug)]
#[allow(missing_docs)] // fields are the checkpoint's branch names
pub struct InceptionD {
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2: BasicConv2d,
    pub branch7x7x3_1: BasicConv2d,
    pub branch7x7x3_2: BasicConv2d,
    pub branch7x7x3_3: BasicConv2d,
    pub branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    /// The block under `vs` (`Mixed_7a`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64) -> Self {
        Self {
            branch3x3_1: BasicConv2d::square(&(vs / "branch3x3_1"), cin, 192, 1, 1, 0),
            branch3x3_2: BasicConv2d::square(&(vs / "branch3x3_2"), 192, 320, 3, 2, 0),
            branch7x7x3_1: BasicConv2d::square(&(vs / "branch7x7x3_1"), cin, 192, 1, 1, 0),
            branch7x7x3_2: BasicConv2d::new(&(vs / "branch7x7x3_2"), 192, 192, [1, 7], 1, [0, 3]),
            branch7x7x3_3: BasicConv2d::new(&(vs / "branch7x7x3_3"), 192, 192, [7, 1], 1, [3, 0]),
            branch7x7x3_4: BasicConv2d::square(&(vs / "branch7x7x3_4"), 192, 192, 3, 2, 0),
        }
    }

    /// `InceptionD.forward`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let b3 = self.branch3x3_2.forward(&self.branch3x3_1.forward(x));
        let b7 = self.branch7x7x3_2.forward(&self.branch7x7x3_1.forward(x));
        let b7 = self.branch7x7x3_4.forward(&self.branch7x7x3_3.forward(&b7));
        Tensor::cat(&[b3, b7, reduce_pool(x)], 1)
    }
}

/// `FIDInceptionE_1(in_channels)` (`Mixed_7b`, [`BranchPool::Avg`]) and
/// `FIDInceptionE_2(in_channels)` (`Mixed_7c`, [`BranchPool::Max`]): 320 + 768 + 768 + 192
/// = 2048 output channels, the 3x3 branches split into parallel 1x3 and 3x1 convolutions.
#[derive(Debug)]
#[allow(missing_docs)] // fields are the checkpoint's branch names
pub struct FidInceptionE {
    pub branch1x1: BasicConv2d,
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2a: BasicConv2d,
    pub branch3x3_2b: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3a: BasicConv2d,
    pub branch3x3dbl_3b: BasicConv2d,
    pub branch_pool: BasicConv2d,
    /// The pooling before `branch_pool`: what tells `_1` from `_2`.
    pub pool: BranchPool,
}

impl FidInceptionE {
    /// The block under `vs` (`Mixed_7b` or `Mixed_7c`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, pool: BranchPool) -> Self {
        let (row, col) = (([1, 3], [0, 1]), ([3, 1], [1, 0]));
        let conv = |name: &str, cin, cout, (k, pad): ([i64; 2], [i64; 2])| {
            BasicConv2d::new(&(vs / name), cin, cout, k, 1, pad)
        };
        Self {
            branch1x1: BasicConv2d::square(&(vs / "branch1x1"), cin, 320, 1, 1, 0),
            branch3x3_1: BasicConv2d::square(&(vs / "branch3x3_1"), cin, 384, 1, 1, 0),
            branch3x3_2a: conv("branch3x3_2a", 384, 384, row),
            branch3x3_2b: conv("branch3x3_2b", 384, 384, col),
            branch3x3dbl_1: BasicConv2d::square(&(vs / "branch3x3dbl_1"), cin, 448, 1, 1, 0),
            branch3x3dbl_2: BasicConv2d::square(&(vs / "branch3x3dbl_2"), 448, 384, 3, 1, 1),
            branch3x3dbl_3a: conv("branch3x3dbl_3a", 384, 384, row),
            branch3x3dbl_3b: conv("branch3x3dbl_3b", 384, 384, col),
            branch_pool: BasicConv2d::square(&(vs / "branch_pool"), cin, 192, 1, 1, 0),
            pool,
        }
    }

    /// `FIDInceptionE_1.forward` / `FIDInceptionE_2.forward`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let b3 = self.branch3x3_1.forward(x);
        let b3 = [self.branch3x3_2a.forward(&b3), self.branch3x3_2b.forward(&b3)];
        let d = self.branch3x3dbl_2.forward(&self.branch3x3dbl_1.forward(x));
        let d = [self.branch3x3dbl_3a.forward(&d), self.branch3x3dbl_3b.forward(&d)];
        let pool = self.branch_pool.forward(&self.pool.apply(x));
        Tensor::cat(&[self.branch1x1.forward(x), Tensor::cat(&b3, 1), Tensor::cat(&d, 1), pool], 1)
    }
}
