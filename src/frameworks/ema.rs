//! The Mean Teacher's exponential moving average of the student's parameters.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::FrameworkError;
use crate::networks::is_buffer_path;

/// A teacher that starts as an independent copy of `student`: same parameter values, its own
/// batch-norm running statistics (burn's `clone` would share them), no gradient tracking.
/// Training flags stay on, so dropout and batch statistics behave as in PyTorch's
/// `ema_model.train()`.
pub fn new_teacher<M: Module>(student: &M) -> M {
    student.valid().train().no_grad()
}

/// `teacher ← α · teacher + (1 - α) · student` for every learnable parameter; batch-norm
/// running statistics are left to the teacher's own forward passes, as PyTorch's
/// `parameters()` excludes buffers.
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
    path: Vec<String>,
    tensors: Vec<Option<(Vec<usize>, Tensor<1>)>>,
}

impl ModuleVisitor for StudentTensors {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let entry = (!is_buffer_path(&self.path)).then(|| {
            let value = param.val();
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Toy {
        weight: Param<Tensor<1>>,
        norm: BatchNorm,
    }

    fn toy(weight: [f32; 2], device: &Device) -> Toy {
        Toy {
            weight: Param::from_tensor(Tensor::from_floats(weight, device)),
            norm: BatchNormConfig::new(2).init(device),
        }
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn ema_mixes_parameters_and_leaves_running_statistics() {
        let device = Device::default().autodiff();
        let student = toy([1.0, 2.0], &device);
        let teacher = new_teacher(&student);
        assert!(!teacher.weight.val().is_require_grad());
        // The student moves to (3, 6) and its batch norm sees data (running mean changes).
        let student = Toy {
            weight: student.weight.map(|w| w.mul_scalar(3.0)),
            norm: student.norm,
        };
        let batch = Tensor::<2>::from_floats([[10.0, 20.0], [30.0, 40.0]], &device);
        let _ = student.norm.forward(batch);
        assert_eq!(
            values(student.norm.running_mean.value_sync()),
            vec![2.0, 3.0]
        );

        let teacher = ema_update(teacher, &student, 0.25).unwrap();
        // 0.25 · (1, 2) + 0.75 · (3, 6)
        assert_eq!(values(teacher.weight.val()), vec![2.5, 5.0]);
        assert_eq!(values(teacher.norm.gamma.val()), vec![1.0, 1.0]);
        // Buffers: the teacher keeps its own (zero) running mean.
        assert_eq!(
            values(teacher.norm.running_mean.value_sync()),
            vec![0.0, 0.0]
        );
        assert!(!teacher.weight.val().is_require_grad());
    }

    #[test]
    fn teacher_forward_does_not_touch_the_student_statistics() {
        let device = Device::default().autodiff();
        let student = toy([1.0, 2.0], &device);
        let teacher = new_teacher(&student);
        let batch = Tensor::<2>::from_floats([[10.0, 20.0], [30.0, 40.0]], &device);
        let _ = teacher.norm.forward(batch);
        assert_eq!(
            values(teacher.norm.running_mean.value_sync()),
            vec![2.0, 3.0]
        );
        assert_eq!(
            values(student.norm.running_mean.value_sync()),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn alpha_one_keeps_the_teacher_and_zero_copies_the_student() {
        let device = Device::default().autodiff();
        let student = toy([1.0, 2.0], &device);
        let teacher = new_teacher(&toy([5.0, 7.0], &device));
        let kept = ema_update(teacher, &student, 1.0).unwrap();
        assert_eq!(values(kept.weight.val()), vec![5.0, 7.0]);
        let copied = ema_update(kept, &student, 0.0).unwrap();
        assert_eq!(values(copied.weight.val()), vec![1.0, 2.0]);
    }
}
