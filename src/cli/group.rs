//! The processes of one `train` run: this process alone, or — in a binary built with the feature `mpi` and started
//! by `mpirun` (or another MPI launcher) — every process of `MPI_COMM_WORLD`, each training on its shard of the rows
//! with the same weights ([`softmax_wgpu::train::Mpi`]). A binary without the feature that finds itself one of
//! several launched processes refuses to run rather than have each train alone and write the same outputs.

use softmax_wgpu::train::{Local, Reducer};
use softmax_wgpu::Error;

/// The launcher's process count, where one set it: Open MPI, MPICH and Slurm's PMI, or PMIx.
fn launched() -> Option<(usize, usize)> {
    let var = |name: &str| std::env::var(name).ok()?.trim().parse::<usize>().ok();
    let size = var("OMPI_COMM_WORLD_SIZE")
        .or_else(|| var("PMI_SIZE"))
        .or_else(|| var("PMIX_SIZE"))?;
    let rank = var("OMPI_COMM_WORLD_RANK")
        .or_else(|| var("PMI_RANK"))
        .or_else(|| var("PMIX_RANK"))
        .unwrap_or(0);
    Some((rank, size))
}

/// This process's rank among the job's processes on this machine, where a launcher says (Open MPI, MPICH, Slurm).
pub fn local_rank() -> Option<usize> {
    let var = |name: &str| std::env::var(name).ok()?.trim().parse::<usize>().ok();
    var("OMPI_COMM_WORLD_LOCAL_RANK")
        .or_else(|| var("MPI_LOCALRANKID"))
        .or_else(|| var("SLURM_LOCALID"))
}

/// Processes of this job on this machine, where the launcher says.
#[cfg(feature = "mpi")]
fn local_processes() -> Option<usize> {
    let var = |name: &str| std::env::var(name).ok()?.trim().parse::<usize>().ok();
    var("OMPI_COMM_WORLD_LOCAL_SIZE").or_else(|| var("MPI_LOCALNRANKS"))
}

/// Gives each of the job's processes on this machine its share of the cores for the CPU path (at least one), unless
/// RAYON_NUM_THREADS says otherwise: P processes each running a thread per core would oversubscribe them P times.
#[cfg(feature = "mpi")]
fn share_cores() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let Some(local) = local_processes().filter(|&l| l > 1) else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // An error here means the pool was built already: it keeps its threads.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads((cores / local).max(1))
        .build_global();
}

/// This run's processes and their collectives.
pub struct Group {
    reducer: Box<dyn Reducer>,
    /// The processes have passed their last collective: an error after it is this process's alone to report.
    closed: bool,
    /// MPI, finalised when the group is dropped (after the reducer).
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group({} of {})", self.rank(), self.size())
    }
}

impl Group {
    /// The group this process belongs to.
    pub fn start() -> Result<Self, Error> {
        let launched = launched();
        #[cfg(feature = "mpi")]
        if launched.is_some() {
            share_cores();
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or_else(|| Error::Internal("MPI was initialised twice".into()))?;
            let reducer = softmax_wgpu::train::Mpi::new(universe.world());
            if reducer.rank() != 0 {
                super::QUIET_SIGNALS.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            return Ok(Group {
                reducer: Box::new(reducer),
                closed: false,
                _universe: Some(universe),
            });
        }
        if let Some((rank, size)) = launched.filter(|&(_, size)| size > 1) {
            return Err(Error::param(
                "mpirun",
                "a binary built with MPI to run as several processes (cargo build --release --features mpi)",
                format!("process {rank} of {size} of a binary built without it"),
            ));
        }
        Ok(Group {
            reducer: Box::new(Local),
            closed: false,
            #[cfg(feature = "mpi")]
            _universe: None,
        })
    }

    pub fn rank(&self) -> usize {
        self.reducer.rank()
    }

    pub fn size(&self) -> usize {
        self.reducer.size()
    }

    /// Rank 0: the process that prints, writes the outputs and reports.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    pub fn reducer(&mut self) -> &mut dyn Reducer {
        self.reducer.as_mut()
    }

    /// Every process agrees that training ended well; after this no collective is entered (the others may have
    /// exited), so a later error (writing the model) is reported by its process alone.
    pub fn agree_and_close(&mut self) -> softmax_wgpu::Result<()> {
        self.reducer.agree()?;
        self.closed = true;
        Ok(())
    }

    /// Ends a run of several processes: an error of this process is told to the others (once), and only the first
    /// failed process prints its line, naming itself, so that a job whose processes all fail alike (a missing file)
    /// says it once; the others end quietly with its exit code. Returns the exit code, or the result as it is for a
    /// single process.
    pub fn finish(
        &mut self,
        result: anyhow::Result<std::process::ExitCode>,
    ) -> anyhow::Result<std::process::ExitCode> {
        if self.size() == 1 {
            return result;
        }
        let e = match result {
            Ok(code) => return Ok(code),
            Err(e) => e,
        };
        // mpirun ends the others with SIGTERM once one exits with an error: the failure is reported once, here.
        super::QUIET_SIGNALS.store(true, std::sync::atomic::Ordering::SeqCst);
        let own = e.downcast_ref::<Error>();
        let peer = matches!(own, Some(Error::Peer { .. }));
        let first = match own {
            Some(Error::Peer { rank, .. }) => *rank,
            _ if self.closed => self.rank(),
            Some(lib) => {
                self.reducer.fail(lib);
                self.reducer.first_failed().unwrap_or(self.rank())
            }
            None => {
                self.reducer.fail(&Error::Internal(format!("{e:#}")));
                self.reducer.first_failed().unwrap_or(self.rank())
            }
        };
        if !peer && first == self.rank() {
            eprintln!("error: process {} of {}: {e:#}", self.rank(), self.size());
        }
        let code = own.map_or(1, Error::exit_code);
        Ok(std::process::ExitCode::from(code))
    }
}
