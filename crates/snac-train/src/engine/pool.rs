//! Reusable buffers for the engine's large temporaries (attention's S×S
//! matrices and projections), so that each step does not page-fault fresh
//! megabytes.

/// A buffer of `len` values from `pool` (contents unspecified: the caller
/// writes every value), or a new one. Reusing them spares the page faults of
/// fresh multi-megabyte allocations at every step.
pub(super) fn take_buffer(pool: &mut Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    // The smallest that fits, so that small requests leave the large
    // buffers to the large ones; else the largest, to grow.
    let fitting = (0..pool.len()).filter(|&i| pool[i].capacity() >= len).min_by_key(|&i| pool[i].capacity());
    let buffer = fitting.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
    let mut buffer = buffer.map_or_else(Vec::new, |i| pool.swap_remove(i));
    buffer.resize(len, 0.0);
    buffer
}

/// Returns buffers to `pool` for [`take_buffer`].
pub(super) fn give_back(pool: &mut Vec<Vec<f32>>, buffers: impl IntoIterator<Item = Vec<f32>>) {
    pool.extend(buffers.into_iter().filter(|b| b.capacity() > 0));
}
