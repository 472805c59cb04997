//! Elementary functions written so that the compiler vectorises them: the C library's scalar
//! `expf` and `erff` are a call per element and stop every loop they appear in from
//! vectorising. `FUSED` evaluates the polynomials with fused multiply-adds: only on paths whose
//! CPU has them, since elsewhere `mul_add` is a library call.

use crate::path::KernelPath;
use rayon::prelude::*;

#[inline(always)]
fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

pub(crate) const LANES: usize = 8;

/// Sum of `f(value)` over a row in `LANES` independent accumulators, so that the loop
/// vectorises (a single accumulator would fix the order of the additions).
#[inline(always)]
pub(crate) fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let whole = row.len() / LANES * LANES;
    for chunk in row[..whole].chunks_exact(LANES) {
        for lane in 0..LANES {
            lanes[lane] += f(chunk[lane]);
        }
    }
    let tail: f32 = row[whole..].iter().map(|&v| f(v)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `softmax(row)` in place, max-shifted; vectorises where it is inlined into a path's wrapper.
#[inline(always)]
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in row.chunks(LANES) {
        for (lane, &s) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(s);
        }
    }
    let max = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for s in row.iter_mut() {
        *s = exp_non_positive(*s - max);
    }
    let inv_total = 1.0 / lane_sum(row, |v| v);
    for s in row.iter_mut() {
        *s *= inv_total;
    }
}

/// e^x for x ≤ 0 (the only range erf and a max-shifted softmax need), accurate to a few ulp;
/// flushes to 0 below −87.
#[inline(always)]
pub fn exp_non_positive(x: f32) -> f32 {
    exp_non_positive_with::<false>(x)
}

#[inline(always)]
fn exp_non_positive_with<const FUSED: bool>(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that k·LN2_HI is exact for |k| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    // Round to nearest with the 1.5·2^23 shift: unlike `f32::round` (a libm call on baseline
    // x86-64) it vectorises. |x·log2 e| < 2^22 here.
    const SHIFT: f32 = 12_582_912.0;
    let shifted = x * LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = x - k * LN2_HI - k * LN2_LO;
    // Taylor series of e^r on |r| ≤ ln2/2 by Horner: the degree-7 remainder is below 1e-9
    // relative.
    const TAYLOR: [f32; 8] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let p = TAYLOR[1..]
        .iter()
        .fold(TAYLOR[0], |p, &c| mul_add::<FUSED>(p, r, c));
    // 2^k through the exponent bits. k sits in the low mantissa bits of `shifted` (whose bit
    // pattern is 0x4B40_0000 + k); integer ops on them vectorise, a float→int cast does not.
    const SHIFT_BITS: u32 = 0x4B40_0000;
    let scale = f32::from_bits(shifted.to_bits().wrapping_sub(SHIFT_BITS).wrapping_add(127) << 23);
    p * scale
}

/// erf by the Abramowitz & Stegun 7.1.26 rational form (|error| ≤ 1.5e-7), the formula
/// PyTorch's vectorised CPU erf uses.
#[inline(always)]
fn erf<const FUSED: bool>(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        1.061_405_4,
        -1.453_152_1,
        1.421_413_7,
        -0.284_496_74,
        0.254_829_6,
    ];
    let ax = x.abs();
    let t = 1.0 / mul_add::<FUSED>(P, ax, 1.0);
    let poly = t * A[1..].iter().fold(A[0], |p, &a| mul_add::<FUSED>(p, t, a));
    let magnitude = 1.0 - poly * exp_non_positive_with::<FUSED>(-ax * ax);
    magnitude.copysign(x)
}

/// Exact-form GELU, `x·Φ(x) = ½x(1 + erf(x/√2))`.
#[inline(always)]
fn gelu<const FUSED: bool>(x: f32) -> f32 {
    0.5 * x * (1.0 + erf::<FUSED>(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU of one value as the portable path computes it.
pub fn gelu_scalar(x: f32) -> f32 {
    gelu::<GENERIC_FUSED>(x)
}

/// The portable path fuses where every CPU of the architecture has fused multiply-add.
const GENERIC_FUSED: bool = cfg!(target_arch = "aarch64");

/// Exact-form GELU in place, on the path's vectors, in parallel above two chunks.
pub fn gelu_in_place(path: KernelPath, values: &mut [f32]) {
    path.assert_available();
    const CHUNK: usize = 1 << 15;
    let slice = |values: &mut [f32]| match path {
        KernelPath::Generic => values
            .iter_mut()
            .for_each(|v| *v = gelu::<GENERIC_FUSED>(*v)),
        _ => path.run(
            #[inline(always)]
            || values.iter_mut().for_each(|v| *v = gelu::<true>(*v)),
        ),
    };
    if values.len() >= 2 * CHUNK {
        values.par_chunks_mut(CHUNK).for_each(slice);
    } else {
        slice(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_on_the_negative_axis() {
        for i in 0..=8700 {
            let x = -(i as f32) * 0.01;
            let (fast, exact) = (exp_non_positive(x) as f64, (x as f64).exp());
            assert!(
                (fast - exact).abs() <= 4e-7 * exact + 1e-38,
                "exp({x}) = {fast}, expected {exact}"
            );
        }
    }

    /// erf in f64 by its Maclaurin series (|x| ≤ 3) or continued fraction, as an independent
    /// reference.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() <= 3.0 {
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) for x > 0.
            let ax = x.abs();
            let mut frac = ax;
            for k in (1..60).rev() {
                frac = ax + (k as f64 / 2.0) / frac;
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / frac;
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn gelu_matches_the_erf_definition_on_every_path() {
        let xs: Vec<f64> = (-2000..=2000).map(|i| i as f64 * 0.005).collect();
        for path in KernelPath::available() {
            let mut y: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
            gelu_in_place(path, &mut y);
            let mut worst = 0.0f64;
            for (&x, &g) in xs.iter().zip(&y) {
                let exact = 0.5 * x * (1.0 + erf_reference(x / std::f64::consts::SQRT_2));
                worst = worst.max((g as f64 - exact).abs() / x.abs().max(1.0));
            }
            assert!(
                worst < 3e-7,
                "{path:?}: worst relative GELU error {worst:e}"
            );
        }
        assert_eq!(gelu_scalar(0.0), 0.0);
        assert_eq!(gelu_scalar(-30.0), 0.0);
        assert_eq!(gelu_scalar(30.0), 30.0);
    }

    #[test]
    fn every_path_computes_the_same_gelu_within_rounding() {
        let values: Vec<f32> = (0..70_001).map(|i| (i as f32 - 35_000.0) * 3e-4).collect();
        for path in KernelPath::available() {
            let mut y = values.clone();
            gelu_in_place(path, &mut y);
            for (v, g) in values.iter().zip(&y) {
                let scalar = gelu_scalar(*v);
                assert!(
                    (g - scalar).abs() <= 6e-7 * scalar.abs().max(1.0),
                    "{path:?}: gelu({v}) = {g}, {scalar}"
                );
            }
        }
    }
}
