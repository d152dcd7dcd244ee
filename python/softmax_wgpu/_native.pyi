"""Types of the native functions (python/src/lib.rs) that the estimator calls."""

from os import PathLike
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Fitted = Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], int, float, str]

def fit_lbfgs(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.uint32],
    k: int,
    l2: float,
    tol: float,
    max_iter: int,
    device: str,
    sample_weight: Optional[npt.NDArray[np.float32]] = None,
    class_weight: Optional[Sequence[float]] = None,
    verbose: bool = False,
    init: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
) -> _Fitted: ...
def fit_lbfgs_csr(
    indptr: npt.NDArray[np.uint64],
    indices: npt.NDArray[np.uint32],
    data: npt.NDArray[np.float32],
    features: int,
    y: npt.NDArray[np.uint32],
    k: int,
    l2: float,
    tol: float,
    max_iter: int,
    device: str,
    sample_weight: Optional[npt.NDArray[np.float32]] = None,
    class_weight: Optional[Sequence[float]] = None,
    verbose: bool = False,
    init: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
) -> _Fitted: ...
def fit_file(
    path: str,
    labels: Optional[str],
    label_column: int,
    zero_based: Optional[bool],
    c: float,
    penalty: bool,
    tol: float,
    max_iter: int,
    device: str,
    verbose: bool = False,
) -> Tuple[_Fitted, list[str]]: ...
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
