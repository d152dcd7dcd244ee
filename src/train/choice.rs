//! The automatic choice of method, as library policy: with no optimizer and no minibatch setting asked for, a run
//! whose training rows are held takes full-batch L-BFGS to convergence and one whose rows stream takes minibatch SGD
//! with SGDClassifier's convergence rule; L-BFGS and the automatic choice take scikit-learn's default penalty,
//! C = 1 (λ = 1/N, or 2/N with two classes: [`default_l2_numerator`]), unless one is given. Every figure the choice reads is global: with several processes the rows
//! are counted over all shards, and the rows stream if they stream on any process.

use crate::config::TrainConfig;
use crate::data::RowSource;
use crate::error::Result;
use crate::lbfgs::LbfgsOptions;
use crate::optim::Optimizer;
use crate::stopping::Convergence;

use super::{residency, Backend, Reducer, Residency};

/// The default penalty is this over N, scikit-learn's `C = 1`: 1 for K classes; 2 for two, where scikit-learn fits
/// one weight vector v and softmax two, w₁ = −w₂ = v/2 at the optimum, so that λ/2·(‖w₁‖² + ‖w₂‖²) = λ/4·‖v‖² is its
/// ‖v‖²/(2N) at λ = 2/N.
pub fn default_l2_numerator(k: usize) -> f64 {
    if k == 2 {
        2.0
    } else {
        1.0
    }
}

/// Most epochs of the automatic minibatch choice (scikit-learn's SGDClassifier allows 1,000; a streamed data set is
/// large, so each epoch is many steps).
pub const AUTO_MAX_EPOCHS: usize = 100;

/// What a run asked for that the choice resolves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// No optimizer and no minibatch setting was given: choose one.
    pub automatic: bool,
    /// L-BFGS's settings, when it is chosen or asked for.
    pub lbfgs: LbfgsOptions,
    /// The cap on the automatic minibatch choice's epochs (`--max-iter`); [`AUTO_MAX_EPOCHS`] without one.
    pub max_epochs: Option<usize>,
    /// The convergence tolerance of the automatic minibatch choice (`--tol`); SGDClassifier's without one.
    pub tol: Option<f64>,
    /// An L2 penalty was given: keep it rather than λ = 1/N.
    pub l2_given: bool,
}

/// Why L-BFGS runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `--optimizer lbfgs`.
    Asked,
    /// Automatic: the training rows fit in host memory.
    FitsInMemory,
    /// Automatic: the training rows fit in the device's memory.
    FitsOnDevice,
}

/// What was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Full-batch L-BFGS.
    Lbfgs(Why),
    /// Minibatch SGD with the convergence rule (automatic, for rows that stream).
    StreamedSgd,
}

/// The choice made and the figures behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// The method.
    pub method: Method,
    /// The training rows over all processes.
    pub rows: u64,
    /// The penalty set to 1/N, when it was.
    pub l2: Option<f32>,
}

/// Resolves `request` into `cfg` for `backend` and the training rows `train`, on every process alike (`reducer`
/// carries the row counts and whether any process streams). Called for the automatic choice and for an explicit
/// L-BFGS (its default penalty).
pub fn choose(
    request: &Request,
    cfg: &mut TrainConfig,
    backend: &dyn Backend,
    train: &dyn RowSource,
    reducer: &mut dyn Reducer,
) -> Result<Choice> {
    let streamed = matches!(residency(backend, train, cfg), Residency::Streamed { .. });
    let mut global = [
        train.rows().unwrap_or(0) as f64,
        f64::from(u8::from(streamed)),
    ];
    reducer.allreduce(&mut global)?;
    let (rows, streamed) = (global[0] as u64, global[1] > 0.0);
    let method = if request.automatic && streamed {
        cfg.optimizer = Optimizer::Sgd;
        cfg.epochs = request.max_epochs.unwrap_or(AUTO_MAX_EPOCHS);
        cfg.convergence = Some(Convergence {
            tol: request.tol.unwrap_or(Convergence::SGD_CLASSIFIER.tol),
            ..Convergence::SGD_CLASSIFIER
        });
        Method::StreamedSgd
    } else {
        cfg.optimizer = Optimizer::Lbfgs(request.lbfgs);
        Method::Lbfgs(match (request.automatic, backend.holds_in_host_memory()) {
            (false, _) => Why::Asked,
            (true, true) => Why::FitsInMemory,
            (true, false) => Why::FitsOnDevice,
        })
    };
    let l2 = (!request.l2_given && rows > 0).then(|| {
        cfg.l2 = (default_l2_numerator(backend.shape().k) / rows as f64) as f32;
        cfg.l2
    });
    Ok(Choice { method, rows, l2 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;
    use crate::data::InMemory;
    use crate::params::Shape;
    use crate::train::Local;

    #[test]
    fn the_default_penalty_is_scikit_learns_c_of_one_for_two_classes_and_more() {
        let request = Request {
            automatic: true,
            lbfgs: LbfgsOptions::default(),
            max_epochs: None,
            tol: None,
            l2_given: false,
        };
        for (k, numerator) in [(2, 2.0), (3, 1.0), (10, 1.0)] {
            let y: Vec<u32> = (0..100).map(|i| (i % k) as u32).collect();
            let x = ndarray::Array2::from_shape_fn((100, 4), |(i, j)| (i * j % 7) as f32);
            let rows = InMemory::from_arrays("t", x, y, k).unwrap();
            let backend = CpuBackend::<f32>::new(Shape { d: 4, k });
            let mut cfg = TrainConfig::default();
            let c = choose(&request, &mut cfg, &backend, &rows, &mut Local).unwrap();
            assert_eq!(c.l2, Some((numerator / 100.0) as f32), "{k} classes");
            assert_eq!(cfg.l2, (numerator / 100.0) as f32);
        }
    }
}
