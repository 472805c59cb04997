//! A safe view of the `gemm` crate's strided matrix product, shared by the kernels that reduce
//! to one GEMM (the stride-2 layers, LiteMedSAM's token layers).

/// A row-major matrix view: `rows` x `cols` with element (r, c) at `r * row_stride + c *
/// col_stride` (a transposed view swaps the strides).
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Matrix<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    pub fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `out = lhs * rhs` (row-major `lhs.rows` x `rhs.cols`), or `out += lhs * rhs` when
/// `accumulate`, on rayon's threads.
pub fn matmul(out: &mut [f32], lhs: Matrix<'_>, rhs: Matrix<'_>, accumulate: bool) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    product(out, lhs, rhs, accumulate, threads);
}

/// [`matmul`] on the calling thread alone: for many small products that are themselves the
/// parallel tasks.
pub fn matmul_serial(out: &mut [f32], lhs: Matrix<'_>, rhs: Matrix<'_>, accumulate: bool) {
    product(out, lhs, rhs, accumulate, gemm::Parallelism::None);
}

fn product(
    out: &mut [f32],
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert_eq!(lhs.cols, rhs.rows, "matmul: inner sizes");
    assert_eq!(out.len(), lhs.rows * rhs.cols, "matmul: output size");
    lhs.check();
    rhs.check();
    // SAFETY: the views were checked to lie inside their slices, the output has exactly
    // lhs.rows x rhs.cols elements, and the slices do not alias (one is &mut).
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            out.as_mut_ptr(),
            1,
            rhs.cols as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_handles_transposed_views_and_accumulates() {
        // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 0], [0, 1], [1, 1]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut out = vec![0.0; 4];
        matmul(
            &mut out,
            Matrix::row_major(&a, 2, 3),
            Matrix::row_major(&b, 3, 2),
            false,
        );
        assert_eq!(out, vec![4.0, 5.0, 10.0, 11.0]);
        // bᵀ aᵀ = (a b)ᵀ, accumulated onto itself.
        let mut out_t = vec![4.0, 10.0, 5.0, 11.0];
        matmul(
            &mut out_t,
            Matrix::row_major(&b, 3, 2).transposed(),
            Matrix::row_major(&a, 2, 3).transposed(),
            true,
        );
        assert_eq!(out_t, vec![8.0, 20.0, 10.0, 22.0]);
    }
}
