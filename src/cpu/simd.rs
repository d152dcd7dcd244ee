//! Element-wise operations both fast CPU trainers run, compiled for the machine's instruction set by pulp's runtime
//! dispatch (`arch.dispatch(op)`): whatever `with_simd` calls must be `#[inline(always)]`, and loops are plain
//! `for` loops (a closure's call shim would stay outside the function with the target features).

/// dst += src.
pub(crate) struct AddInto<'a>(pub &'a mut [f32], pub &'a [f32]);

impl pulp::WithSimd for AddInto<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        add_into(self.0, self.1)
    }
}

/// dst += src, inlined into the caller.
#[inline(always)]
pub(crate) fn add_into(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

/// The plain-SGD update, element by element in any layout shared by W and G: W ← shrink(W − α·(G/B + λ·W), α·λ₁),
/// b ← b − α·g_b/B.
pub(crate) struct UpdateOp<'a> {
    pub w: &'a mut [f32],
    pub g: &'a [f32],
    pub b: &'a mut [f32],
    pub gb: &'a [f32],
    pub lr: f32,
    pub l2: f32,
    pub l1: f32,
    pub rows: f32,
}

impl pulp::WithSimd for UpdateOp<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let (lr, l2, rows) = (self.lr, self.l2, self.rows);
        let t = lr * self.l1;
        for (w, &g) in self.w.iter_mut().zip(self.g) {
            *w = crate::cpu::shrink(*w - lr * (g / rows + l2 * *w), t);
        }
        for (b, &g) in self.b.iter_mut().zip(self.gb) {
            *b -= lr * (g / rows);
        }
    }
}
