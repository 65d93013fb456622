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

    /// Stack caches along the batch dimension, each left-padded with zeros to the longest, so
    /// sequences of different lengths can decode together (the caller masks the padding).
    pub fn stack_left_padded(caches: &[&KvCache]) -> Result<KvCache> {
        let num_layers = caches.first().map_or(0, |c| c.layers.len());
        if caches.iter().any(|c| c.layers.len() != num_layers) {
            candle_core::bail!("kv caches with different layer counts");
        }
        let width = caches.iter().map(|c| c.len()).max().unwrap_or(0);
        let mut layers = Vec::with_capacity(num_layers);
        for l in 0..num_layers {
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for c in caches {
                let lc = &c.layers[l];
                let (Some(k), Some(v)) = (&lc.k, &lc.v) else {
                    candle_core::bail!("cannot stack an empty kv cache");
                };
                ks.push(left_pad(&k.narrow(2, 0, lc.len)?, width)?);
                vs.push(left_pad(&v.narrow(2, 0, lc.len)?, width)?);
            }
            // Room to append without an immediate regrow.
            let cap = (width + 1).next_multiple_of(64);
            let k = Tensor::cat(&ks, 0)?;
            let v = Tensor::cat(&vs, 0)?;
            layers.push(LayerCache {
                k: Some(grow(Some(&k), &k, width, cap)?),
                v: Some(grow(Some(&v), &v, width, cap)?),
                len: width,
            });
        }
        Ok(KvCache { layers })
    }

    /// Drop the first `n` positions of every row (padding no row needs any more).
    pub fn drop_front(&mut self, n: usize) -> Result<()> {
        for c in &mut self.layers {
            let n = n.min(c.len);
            if let (Some(k), Some(v)) = (&c.k, &c.v) {
                let cap = k.dim(2)?;
                let rest = c.len - n;
                let k = k.narrow(2, n, rest)?;
                let v = v.narrow(2, n, rest)?;
                c.k = Some(grow(Some(&k), &k, rest, cap)?);
                c.v = Some(grow(Some(&v), &v, rest, cap)?);
                c.len = rest;
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

fn left_pad(x: &Tensor, width: usize) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    if t == width {
        return Ok(x.clone());
    }
    let pad = Tensor::zeros((b, h, width - t, d), x.dtype(), x.device())?;
    Tensor::cat(&[&pad, x], 2)
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
