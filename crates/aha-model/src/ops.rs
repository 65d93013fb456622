//! The op set by mode: fused kernels for inference, differentiable compositions for training.
//! (candle's fused rms_norm, softmax_last_dim and rope have no backward pass.)

use candle_core::{Result, Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fused ops, weights detached from the autograd graph.
    Inference,
    /// Differentiable ops; gradients reach every parameter.
    Train,
}

/// A large finite negative: -inf turns fully masked rows into NaN.
pub const MASK_VALUE: f64 = -1e9;

pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32),
        Mode::Train => {
            let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
            x.broadcast_mul(&inv)?.broadcast_mul(weight)
        }
    }
}

pub fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Inference => candle_nn::ops::softmax_last_dim(&x.contiguous()?),
        Mode::Train => {
            let max = x.max_keepdim(D::Minus1)?.detach();
            let e = x.broadcast_sub(&max)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
        }
    }
}

/// A weight as the mode wants it: detached for inference, so that sampling with
/// trainable weights builds no autograd graph.
pub fn param(w: &Tensor, mode: Mode) -> Tensor {
    match mode {
        Mode::Inference => w.detach(),
        Mode::Train => w.clone(),
    }
}

/// y = x W^T (+ b) for x [.., in], as one matmul over the flattened leading dims.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (lead, in_dim) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, in_dim[0]))?;
        let w = param(&self.weight, mode);
        let mut y = x2.matmul(&w.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&param(b, mode))?;
        }
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        y.reshape(out)
    }
}

/// The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)).
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate.forward(x, mode)?)?;
        self.down
            .forward(&(gate * self.up.forward(x, mode)?)?, mode)
    }
}
