"""Types of the native functions (python/src/lib.rs) that the estimator calls."""

from os import PathLike
from typing import Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

_State = Tuple[int, list[Tuple[str, list[int], list[float]]]]

class Settings(TypedDict):
    """A fit's settings (python/src/lib.rs, ``Settings``)."""

    k: int
    l2_c: float
    l1_c: float
    fit_intercept: bool
    solver: str
    tol: float
    max_iter: int
    batch_size: int
    learning_rate: float
    seed: int
    device: str
    class_weight: Optional[Sequence[float]]
    verbose: bool
    init: Optional[Tuple[Sequence[float], Sequence[float]]]
    resume: Optional[Tuple[int, _State]]

class Fitted(TypedDict):
    """What a fit returns; ``classes`` from ``fit_file`` only."""

    coef: npt.NDArray[np.float32]
    intercept: npt.NDArray[np.float32]
    n_iter: int
    objective: float
    device: str
    lent: bool
    state: Optional[_State]
    converged: bool
    classes: list[str]

def fit_dense(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.uint32],
    settings: Settings,
    sample_weight: Optional[npt.NDArray[np.float32]] = None,
) -> Fitted: ...
def fit_csr(
    indptr: npt.NDArray[np.uint64],
    indices: npt.NDArray[np.uint32],
    data: npt.NDArray[np.float32],
    features: int,
    y: npt.NDArray[np.uint32],
    settings: Settings,
    sample_weight: Optional[npt.NDArray[np.float32]] = None,
) -> Fitted: ...
def fit_file(
    path: str,
    labels: Optional[str],
    label_column: int,
    zero_based: Optional[bool],
    settings: Settings,
    sample_weight: Optional[str] = None,
    class_weight: Optional[str] = None,
    init_classes: Optional[Sequence[str]] = None,
) -> Fitted: ...
def validate(device: str, seed: int, steps: int) -> str: ...
def adapters() -> list[Tuple[int, str, str, str]]: ...
def save_model(
    path: Union[str, PathLike[str]],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    classes: Sequence[str],
    settings: str,
) -> None: ...
def load_model(
    path: Union[str, PathLike[str]],
) -> Tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    list[str],
    Optional[Tuple[list[float], list[float]]],
]: ...
