//! A preallocated key/value cache: appends write in place, so decoding costs no
//! re-copy of the whole history per token.

use candle_core::{Result, Tensor};

#[derive(Debug, Clone, Default)]
struct LayerCache {
    /// [b, heads, capacity, d] buffers and the number of filled positions.
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); num_layers],
        }
    }

    /// Positions cached so far (same for every layer once a forward pass completes).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append k, v [b, heads, t, d] to `layer`; return all cached keys and values so far.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &mut self.layers[layer];
        let t = k.dim(2)?;
        let needed = c.len + t;
        let capacity = c.k.as_ref().map_or(0, |b| b.dim(2).unwrap_or(0));
        if needed > capacity {
            let new_cap = needed.max(capacity * 2).max(64).next_multiple_of(64);
            c.k = Some(grow(c.k.as_ref(), k, c.len, new_cap)?);
            c.v = Some(grow(c.v.as_ref(), v, c.len, new_cap)?);
        }
        let (kb, vb) = match (&c.k, &c.v) {
            (Some(kb), Some(vb)) => (kb, vb),
            _ => candle_core::bail!("kv cache buffers missing"),
        };
        kb.slice_set(&k.contiguous()?, 2, c.len)?;
        vb.slice_set(&v.contiguous()?, 2, c.len)?;
        c.len = needed;
        Ok((kb.narrow(2, 0, needed)?, vb.narrow(2, 0, needed)?))
    }

    /// Keep only the batch rows in `rows` (u32 indices), e.g. to drop finished sequences.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for c in &mut self.layers {
            if let (Some(k), Some(v)) = (&c.k, &c.v) {
                c.k = Some(k.index_select(rows, 0)?);
                c.v = Some(v.index_select(rows, 0)?);
            }
        }
        Ok(())
    }

    /// Forget positions past `len` (speculative decoding rolls back rejected drafts).
    pub fn truncate(&mut self, len: usize) {
        for c in &mut self.layers {
            c.len = c.len.min(len);
        }
    }
}

fn grow(old: Option<&Tensor>, like: &Tensor, len: usize, cap: usize) -> Result<Tensor> {
    let (b, h, _, d) = like.dims4()?;
    let buf = Tensor::zeros((b, h, cap, d), like.dtype(), like.device())?;
    if let Some(old) = old {
        if len > 0 {
            buf.slice_set(&old.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
        }
    }
    Ok(buf)
}
