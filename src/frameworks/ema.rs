//! The Mean Teacher's exponential moving average of the student's parameters.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::FrameworkError;

/// A teacher that starts as an independent copy of `student`: same parameter values, its own
/// batch-norm running statistics (burn's `clone` would share them), no gradient tracking.
/// Training flags stay on, so dropout and batch statistics behave as in PyTorch's
/// `ema_model.train()`.
pub fn new_teacher<M: Module>(student: &M) -> M {
    student.valid().train().no_grad()
}

/// `teacher ← α · teacher + (1 - α) · student` for every trainable parameter of `student`
/// (the tensors that require a gradient); batch-norm running statistics are left to the
/// teacher's own forward passes, as PyTorch's `parameters()` excludes buffers.
pub fn ema_update<M: Module>(teacher: M, student: &M, alpha: f64) -> Result<M, FrameworkError> {
    let mut collector = StudentTensors::default();
    student.visit(&mut collector);
    let mut mapper = EmaMapper {
        student: collector.tensors,
        next: 0,
        alpha,
        mismatch: None,
    };
    let teacher = teacher.map(&mut mapper);
    if let Some(message) = mapper.mismatch {
        return Err(FrameworkError::TeacherMismatch(message));
    }
    if mapper.next != mapper.student.len() {
        return Err(FrameworkError::TeacherMismatch(format!(
            "the student has {} tensors, the teacher {}",
            mapper.student.len(),
            mapper.next
        )));
    }
    Ok(teacher)
}

/// Student tensors flattened, in traversal order; `None` for buffers that get no EMA.
#[derive(Default)]
struct StudentTensors {
    tensors: Vec<Option<(Vec<usize>, Tensor<1>)>>,
}

impl ModuleVisitor for StudentTensors {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let entry = value.is_require_grad().then(|| {
            let shape = value.dims().to_vec();
            (shape, value.detach().flatten::<1>(0, D - 1))
        });
        self.tensors.push(entry);
    }
}

struct EmaMapper {
    student: Vec<Option<(Vec<usize>, Tensor<1>)>>,
    next: usize,
    alpha: f64,
    mismatch: Option<String>,
}

impl ModuleMapper for EmaMapper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.next;
        self.next += 1;
        let Some(entry) = self.student.get(index) else {
            self.mismatch.get_or_insert_with(|| {
                format!("the teacher has more tensors than the student ({index}+)")
            });
            return param;
        };
        let Some((shape, student_values)) = entry else {
            return param;
        };
        let teacher_shape = param.lazy_shape().dims::<D>().to_vec();
        if *shape != teacher_shape {
            self.mismatch.get_or_insert_with(|| {
                format!("tensor {index}: student shape {shape:?}, teacher shape {teacher_shape:?}")
            });
            return param;
        }
        let alpha = self.alpha;
        let student_values = student_values.clone();
        param.map(|teacher_values| {
            let student_values = student_values.reshape(teacher_values.shape());
            teacher_values
                .detach()
                .mul_scalar(alpha)
                .add(student_values.mul_scalar(1.0 - alpha))
        })
    }
}
