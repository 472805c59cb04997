//! Every float tensor of a module (parameters and running statistics) as plain values, in
//! traversal order: what "bit-identical weights" compares.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

#[derive(Default)]
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(
            param
                .val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap(),
        );
    }
}

pub fn float_values(module: &impl Module) -> Vec<Vec<f32>> {
    let mut values = Values::default();
    module.visit(&mut values);
    values.0
}
