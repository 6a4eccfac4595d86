"""Type stubs of the compiled module (crates/spanmatch-py). Use the documented wrappers in
:mod:`spanmatch` instead of these."""

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

__version__: str

class Accumulator:
    def __init__(self, layout: str = "nchw", precision: str = "float64", block_rows: Optional[int] = None) -> None: ...
    def update(self, a: np.ndarray, b: np.ndarray, bf16_a: bool = False, bf16_b: bool = False) -> None: ...
    def merge(self, other: "Accumulator") -> None: ...
    @property
    def rows(self) -> int: ...
    @property
    def n1(self) -> Optional[int]: ...
    @property
    def n2(self) -> Optional[int]: ...
    @property
    def layout(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def block_rows(self) -> Optional[int]: ...
    def finish(self) -> "Stats": ...
    def flat(self) -> Optional[np.ndarray]: ...
    def take_flat(self) -> Optional[np.ndarray]: ...
    def state(self) -> bytes: ...
    @staticmethod
    def from_state(state: bytes) -> "Accumulator": ...

class Stats:
    @property
    def n1(self) -> int: ...
    @property
    def n2(self) -> int: ...
    @property
    def rows(self) -> int: ...
    def gram(self) -> np.ndarray: ...
    def sums(self) -> np.ndarray: ...
    def profile(
        self, dead: str = "drop", tol: Optional[float] = None
    ) -> Tuple[np.ndarray, np.ndarray, float, List[int], List[int]]: ...
    def max_match(self, eps: float, dead: str = "drop", tol: Optional[float] = None) -> Tuple[List[int], List[int], float]: ...
    def simple_matches(
        self,
        eps: float,
        dead: str = "drop",
        tol: Optional[float] = None,
        orders: int = 0,
        seed: int = 0,
        neurons_a: Optional[List[int]] = None,
        neurons_b: Optional[List[int]] = None,
    ) -> Tuple[List[Tuple[List[int], List[int], int]], bool]: ...
    def measures(
        self, names: List[str], shape_alpha: float = ..., ridge_alpha: float = ..., transport_plan: bool = ...
    ) -> str: ...
    def flat(self) -> np.ndarray: ...
    @staticmethod
    def from_flat(flat: np.ndarray) -> "Stats": ...
    def state(self) -> bytes: ...
    @staticmethod
    def from_state(state: bytes) -> "Stats": ...
    @staticmethod
    def from_parts(
        n1: int,
        n2: int,
        rows: int,
        gram: Sequence[float],
        sums: Sequence[float],
        weighted_by_a: Sequence[float],
        weighted_by_b: Sequence[float],
        aa: float,
        ab: float,
        bb: float,
    ) -> "Stats": ...

Outcome = Tuple[str, str, List[str], List[List[Tuple[float, float]]]]

def analyse(
    stats: List[Stats],
    names: List[str],
    names_b: List[Optional[str]],
    shapes_a: List[List[int]],
    shapes_b: List[List[int]],
    options: str,
    front: str = "python",
    file_a: str = "a",
    file_b: str = "b",
    layout: str = "nchw",
    chunks: List[List[Stats]] = ...,
    baseline: List[Stats] = ...,
    baseline_chunks: List[List[Stats]] = ...,
    extras: Optional[str] = None,
    progress: Optional[Callable[[str, int, int], Any]] = None,
) -> Outcome: ...
def compare_files(
    path_a: str,
    path_b: str,
    options: str,
    layout: str = "nchw",
    layers: List[str] = ...,
    block_rows: Optional[int] = None,
    sample_columns: Optional[int] = None,
    repeats: int = 16,
    flatten: bool = False,
) -> Outcome: ...
def measure_names() -> List[str]: ...
def _test_panic() -> None: ...
def read_results(text: str) -> Tuple[str, str, List[str]]: ...
def neuron_view_selection(
    results: str, seed: Optional[int] = None, largest: int = 5, one_to_one: int = 5, per_side: int = 4
) -> str: ...
def render_report(
    results: str,
    out_dir: str,
    views: Optional[str] = None,
    images: List[Tuple[int, Optional[int], bytes, Tuple[int, int, int]]] = ...,
    tokens: List[Tuple[int, int, List[str], str, List[str]]] = ...,
    class_names: List[str] = ...,
    png: bool = True,
) -> List[str]: ...
def mms_figure_svg(results: str, max_width: float = 560.0) -> str: ...
