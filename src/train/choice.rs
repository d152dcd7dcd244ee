//! The automatic choice of method, as library policy: with no optimizer and no minibatch setting asked for, a run
//! whose training rows are held takes full-batch L-BFGS to convergence and one whose rows stream takes minibatch SGD
//! with SGDClassifier's convergence rule; L-BFGS and the automatic choice take scikit-learn's default penalty,
//! λ = 1/N (C = 1), unless one is given. Every figure the choice reads is global: with several processes the rows
//! are counted over all shards, and the rows stream if they stream on any process.

use crate::config::TrainConfig;
use crate::data::RowSource;
use crate::error::Result;
use crate::lbfgs::LbfgsOptions;
use crate::optim::Optimizer;
use crate::stopping::Convergence;

use super::{residency, Backend, Reducer, Residency};

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
        cfg.l2 = (1.0 / rows as f64) as f32;
        cfg.l2
    });
    Ok(Choice { method, rows, l2 })
}
