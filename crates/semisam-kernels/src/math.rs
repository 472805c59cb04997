//! Elementary functions written so that the compiler vectorises them: the C library's scalar
//! `expf` is a call per element and stops every loop it appears in from vectorising.

/// e^x for x ≤ 0 (the only range erf and a max-shifted softmax need), accurate to a few ulp; flushes to 0 below −87.
#[inline(always)]
pub fn exp_non_positive(x: f32) -> f32 {
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
    // Taylor series of e^r on |r| ≤ ln2/2: the degree-7 remainder is below 1e-9 relative.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^k through the exponent bits. k sits in the low mantissa bits of `shifted` (whose bit
    // pattern is 0x4B40_0000 + k); integer ops on them vectorise, a float→int cast does not.
    const SHIFT_BITS: u32 = 0x4B40_0000;
    let scale = f32::from_bits(shifted.to_bits().wrapping_sub(SHIFT_BITS).wrapping_add(127) << 23);
    p * scale
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
}
