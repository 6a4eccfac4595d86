"""The numpy front: streaming accumulators, finished statistics, and whole comparisons."""

from __future__ import annotations

import json
import os
import warnings as _warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._options import DEFAULT_EPS, Options, options_from
from ._result import MaxMatch, Profile, Result, SimpleMatch
from . import _provenance, _topk

__all__ = ["DEFAULT_EPS", "Accumulator", "Stats", "compare", "analyse", "as_activations", "flat_length"]

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = Any


def as_activations(x: ArrayLike, what: str = "a") -> Tuple[np.ndarray, bool]:
    """Returns a numpy view of an activation array without copying where the layout allows, and
    whether it holds bfloat16 bits (as uint16).

    Accepts numpy arrays, CPU torch tensors (float16/bfloat16/float32/float64; read in place),
    objects with ``__dlpack__`` or ``__array__``. ``what`` names the argument in error messages.
    """
    if isinstance(x, np.ndarray):
        return x, False
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        import torch

        t = x.detach()
        if t.device.type != "cpu":
            raise ValueError(
                f"{what}: the tensor is on {t.device}; move it to the CPU (.cpu()) or use "
                "spanmatch.torch.compare, which accumulates the statistics on the device"
            )
        if t.is_conj():
            t = t.resolve_conj()
        if t.is_neg():
            t = t.resolve_neg()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16), True
        return t.numpy(), False
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x), False
        except (TypeError, RuntimeError, BufferError):
            pass
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        return np.asarray(x), False
    raise TypeError(
        f"{what}: expected an array (numpy, torch tensor, anything with __array__ or __dlpack__), "
        f"a dict of layer name -> array, or a path; got {type(x).__name__}"
    )


def _native_update(acc: Any, a: ArrayLike, b: ArrayLike) -> None:
    xa, bf_a = as_activations(a, "a")
    xb, bf_b = as_activations(b, "b")
    acc.update(xa, xb, bf_a, bf_b)


class Stats:
    """Finished statistics of one layer pair: everything after the single pass over the data.

    The analysis of a layer pair needs only these (the joint Gram matrix of ``[A | B]`` in
    float64, column sums, row count, row-norm moments), so every method below costs the same
    whatever the number of rows. Pickles exactly.
    """

    __slots__ = ("_native",)

    def __init__(self, native: Any) -> None:
        self._native = native

    @staticmethod
    def from_parts(
        n1: int,
        n2: int,
        rows: int,
        gram: ArrayLike,
        sums: ArrayLike,
        weighted_by_a: ArrayLike,
        weighted_by_b: ArrayLike,
        aa: float,
        ab: float,
        bb: float,
    ) -> "Stats":
        """Statistics computed elsewhere (on a GPU, in other processes), in float64.

        With ``M = [A | B]`` the joint rows (A: ``n1`` columns, B: ``n2``), ``a_i = ||A_i||²`` and
        ``b_i = ||B_i||²``: ``gram = MᵀM`` (``(n1+n2)²``), ``sums = Σ_i M_i``,
        ``weighted_by_a = Σ_i a_i M_i``, ``weighted_by_b = Σ_i b_i M_i``, ``aa = Σ a_i²``,
        ``ab = Σ a_i b_i``, ``bb = Σ b_i²``. Statistics of disjoint rows add up exactly.
        """
        n = int(n1) + int(n2)
        g = np.asarray(gram, dtype=np.float64)
        if g.shape != (n, n):
            raise ValueError(f"gram: shape {g.shape}, expected ({n}, {n}) for {n1} + {n2} neurons")
        vec = lambda v, name: np.asarray(v, dtype=np.float64).reshape(-1).tolist()  # noqa: E731
        return Stats(
            _native.Stats.from_parts(
                int(n1),
                int(n2),
                int(rows),
                g.reshape(-1).tolist(),
                vec(sums, "sums"),
                vec(weighted_by_a, "weighted_by_a"),
                vec(weighted_by_b, "weighted_by_b"),
                float(aa),
                float(ab),
                float(bb),
            )
        )

    @staticmethod
    def from_flat(flat: ArrayLike, n1: Optional[int] = None, n2: Optional[int] = None) -> "Stats":
        """Statistics from :meth:`Accumulator.to_flat` / :meth:`Stats.to_flat`, or from a sum of
        such vectors over disjoint inputs (what Dask's reduction or an ``all_reduce`` gives).

        A sum also adds up the two widths in the header: pass ``n1`` and ``n2`` to restore them.
        """
        v = np.require(flat, dtype=np.float64, requirements=["C", "A"]).reshape(-1)
        if n1 is not None and n2 is not None:
            if len(v) < 2:
                raise ValueError(f"from_flat: {len(v)} values, too few for statistics")
            if (v[0], v[1]) != (int(n1), int(n2)):
                v = v.copy()  # (the caller's array is left as it was)
                v[0], v[1] = int(n1), int(n2)
        return Stats(_native.Stats.from_flat(v))

    def to_flat(self) -> np.ndarray:
        """The exact statistics as one float64 vector of :func:`flat_length` values: a header
        ``(n1, n2, rows, Σa², Σab, Σb²)``, the column sums, the two row-norm-weighted sums and
        the Gram matrix. Vectors of disjoint inputs add up element-wise past the two widths."""
        return self._native.flat()

    @property
    def n1(self) -> int:
        """Neurons of net A."""
        return int(self._native.n1)

    @property
    def n2(self) -> int:
        """Neurons of net B."""
        return int(self._native.n2)

    @property
    def rows(self) -> int:
        """Rows accumulated."""
        return int(self._native.rows)

    @property
    def gram(self) -> np.ndarray:
        """The symmetric ``(n1+n2) x (n1+n2)`` Gram matrix of ``[A | B]`` (a copy)."""
        return self._native.gram()

    @property
    def sums(self) -> np.ndarray:
        """Column sums of ``[A | B]``."""
        return self._native.sums()

    def profile(self, dead: str = "drop", tol: Optional[float] = None) -> Profile:
        """Every neuron's threshold ε*: neuron v is in the maximum match at ε iff ε ≥ ε*(v)."""
        ta, tb, max_eps, da, db = self._native.profile(dead, tol)
        return Profile(
            np.asarray(ta),
            np.asarray(tb),
            float(max_eps),
            np.asarray(da, dtype=np.int64),
            np.asarray(db, dtype=np.int64),
        )

    def max_match(self, eps: float, dead: str = "drop", tol: Optional[float] = None) -> MaxMatch:
        """The maximum ε-approximate match: neuron indices on both sides and mms."""
        a, b, mms = self._native.max_match(float(eps), dead, tol)
        return MaxMatch(float(eps), np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), float(mms))

    def simple_matches(
        self,
        eps: float,
        dead: str = "drop",
        tol: Optional[float] = None,
        orders: int = 0,
        seed: int = 0,
        neurons_a: Optional[Sequence[int]] = None,
        neurons_b: Optional[Sequence[int]] = None,
    ) -> List[SimpleMatch]:
        """The simple matches at ``eps`` (matches that are not unions of smaller ones), largest
        first: for each neuron of the maximum match, a minimal match containing it.

        At ε = 0 with linearly independent neurons on each side the list is exact and complete;
        otherwise it depends on the order in which neurons are tried, and ``orders`` adds seeded
        random orders.

        ``neurons_a`` / ``neurons_b`` (indices into each layer) ask about given neurons only
        ("which group does channel 17 belong to?"): the result is the full search restricted
        to them (the minimal matches found for those neurons), at a cost that grows with the
        number of neurons asked for, not with the layer. A neuron outside the maximum match at
        ``eps`` has no match; an index out of range, or a dead neuron under ``dead="drop"``,
        raises ``ValueError``.
        """
        found, _exact = self._native.simple_matches(
            float(eps),
            dead,
            tol,
            int(orders),
            int(seed),
            None if neurons_a is None else [int(i) for i in neurons_a],
            None if neurons_b is None else [int(i) for i in neurons_b],
        )
        return [SimpleMatch(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), int(c)) for a, b, c in found]

    def measures(
        self,
        names: Union[str, Sequence[str]] = ("cka",),
        *,
        shape_alpha: float = 0.5,
        ridge_alpha: float = 0.0,
        transport_plan: bool = False,
    ) -> Dict[str, Any]:
        """Measures from the same statistics, as the schema's ``measures`` object: ``cka``
        (linear CKA, biased and debiased), ``cca``, ``svcca``, ``pwcca``, ``procrustes``,
        ``predictivity``, ``shape``, ``one_to_one`` (alias ``match_1to1``), ``soft_match``,
        ``perm_procrustes``, or ``"all"`` (docs/measures.md). ``shape_alpha``, ``ridge_alpha``
        and ``transport_plan`` are those of :class:`spanmatch.Options`.

        Raises:
            ValueError: an unknown measure name (the message lists the valid ones), an option
                outside its range (named).
        """
        if isinstance(names, str):
            names = (names,)
        return json.loads(
            self._native.measures(list(names), float(shape_alpha), float(ridge_alpha), bool(transport_plan))
        )

    def result(self, options: Optional[Options] = None, name: str = "layer", **kwargs: Any) -> Result:
        """The full :class:`Result` of this layer pair (as ``spanmatch.compare`` gives it), with
        ``options`` (a :class:`spanmatch.Options`) and/or its fields as keyword arguments."""
        return analyse({name: self}, options, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stats) and self._native == other._native

    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]:
        return (_stats_from_state, (bytes(self._native.state()),))

    def __repr__(self) -> str:
        return f"Stats(n1={self.n1}, n2={self.n2}, rows={self.rows})"


def flat_length(n1: int, n2: int) -> int:
    """Length of the flat statistics of ``n1 + n2`` neurons (:meth:`Stats.to_flat`)."""
    n = int(n1) + int(n2)
    return 6 + 3 * n + n * n


def _stats_from_state(state: bytes) -> Stats:
    return Stats(_native.Stats.from_state(state))


class Accumulator:
    """Streaming statistics of one layer pair: feed batches, merge, pickle, finish.

    ``update(a, b)`` takes one batch of the same inputs for both nets: ``[N, C]`` (fully
    connected), ``[N, C, ...]`` (convolutional: a channel is a neuron, every (input, position)
    is a row) or channels-last with ``layout="nhwc"``. Any number of batches, any sizes; the
    result equals one pass over everything. Arrays are read in place (no copy) in float64
    accumulation; the GIL is released while working, so threads can update different
    accumulators at once. Accumulators of disjoint inputs :meth:`merge` exactly, and pickle
    exactly (this is how they travel through multiprocessing, Dask or Ray).

    Rows are gathered into blocks before each Gram product: by default a batch's own rows (in
    blocks of about 8 MB of float64 values), and batches of fewer than 512 rows wait for the
    next ones until there are 512 (one row per input against a wide layer: fewer, larger
    products); ``block_rows`` fixes the block size instead. :meth:`finish`, :meth:`merge`,
    :meth:`to_flat` and pickling add the rows still waiting. The result equals an update per
    batch up to floating-point summation order (about 1e-15 relative).

    ``precision="float32"``: each block's Gram product, column sums and row-norm moments are
    computed in float32 (one OpenBLAS ``ssyrk``, about twice as fast as float64) and added to
    float64 statistics: the sums across blocks are float64, each block sums up to a block of
    float32 terms (relative errors of order 1e-7 to 1e-6). Thresholds moved by up to 3.5e-4 in
    our benchmarks, on nearly rank-deficient layers; 1e-5 or less elsewhere
    (docs/benchmarks.md). Inputs of any dtype are read as float32.

    Example::

        acc = spanmatch.Accumulator()
        for xa, xb in batches:
            acc.update(xa, xb)
        stats = acc.finish()
        print(stats.max_match(0.25))
    """

    __slots__ = ("_native",)

    def __init__(self, layout: str = "nchw", precision: str = "float64", block_rows: Optional[int] = None) -> None:
        self._native = _native.Accumulator(layout, precision, block_rows)

    def update(self, a: ArrayLike, b: ArrayLike) -> "Accumulator":
        """Adds one batch: ``a`` (net A) and ``b`` (net B) on the same inputs, same order."""
        _native_update(self._native, a, b)
        return self

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Adds the statistics of ``other`` (fed with other inputs); returns self."""
        if not isinstance(other, Accumulator):
            raise TypeError(f"merge: expected an Accumulator, got {type(other).__name__}")
        self._native.merge(other._native)
        return self

    @property
    def rows(self) -> int:
        """Rows accumulated so far."""
        return int(self._native.rows)

    @property
    def n1(self) -> Optional[int]:
        """Neurons of net A (None before the first update)."""
        return self._native.n1

    @property
    def n2(self) -> Optional[int]:
        """Neurons of net B (None before the first update)."""
        return self._native.n2

    @property
    def layout(self) -> str:
        """``"nchw"`` or ``"nhwc"``."""
        return str(self._native.layout)

    @property
    def precision(self) -> str:
        """``"float64"`` or ``"float32"`` (the per-block Gram products)."""
        return str(self._native.precision)

    def to_flat(self) -> np.ndarray:
        """The exact statistics as one float64 vector (see :meth:`Stats.to_flat`); before the
        first update it raises ``ValueError`` (the widths are not known yet)."""
        if self.n1 is None:
            raise ValueError("to_flat: the accumulator has no statistics yet (no update)")
        return self._native.flat()

    def _take_flat(self) -> Optional[np.ndarray]:
        """:meth:`to_flat`, then empties the accumulator in place (same widths, same memory):
        the end of one bootstrap chunk and the start of the next. ``None`` before the first
        update. (For the package's fronts.)"""
        return self._native.take_flat()

    def finish(self) -> Stats:
        """The finished statistics (the accumulator stays usable)."""
        return Stats(self._native.finish())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Accumulator) and self._native == other._native

    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]:
        return (_accumulator_from_state, (bytes(self._native.state()),))

    def __repr__(self) -> str:
        prec = "" if self.precision == "float64" else f", precision='{self.precision}'"
        return f"Accumulator(layout='{self.layout}'{prec}, n1={self.n1}, n2={self.n2}, rows={self.rows})"


def _accumulator_from_state(state: bytes) -> Accumulator:
    acc = Accumulator.__new__(Accumulator)
    acc._native = _native.Accumulator.from_state(state)
    return acc


def _emit(warns: Iterable[str]) -> List[str]:
    out = list(warns)
    for w in out:
        _warnings.warn(w, stacklevel=3)
    return out


def analyse(
    stats: Mapping[str, Stats],
    options: Optional[Options] = None,
    *,
    names_b: Optional[Mapping[str, str]] = None,
    shapes: Optional[Mapping[str, Tuple[Sequence[int], Sequence[int]]]] = None,
    label_a: str = "a",
    label_b: str = "b",
    layout: str = "nchw",
    chunks: Optional[Mapping[str, Sequence[Stats]]] = None,
    baseline: Optional[Mapping[str, Stats]] = None,
    baseline_chunks: Optional[Mapping[str, Sequence[Stats]]] = None,
    extras: Optional[Mapping[str, Mapping[str, Any]]] = None,
    front: str = "python",
    provenance: Optional[Mapping[str, Any]] = None,
    progress: Optional[Callable[[str, int, int], Any]] = None,
    **kwargs: Any,
) -> Result:
    """Analyses finished statistics, one per layer pair, into a :class:`Result`: the one analysis
    step behind every front (numpy, Dask, PyTorch), calling the engine's one analysis of a layer
    pair.

    Args:
        stats: layer name -> :class:`Stats`, in the order the result lists them.
        options: what to compute (a :class:`spanmatch.Options`, a dict of its fields, or None
            for the defaults); keyword arguments named after its fields override it
            (``eps=(0.25,)``, ``null="rotate"``, ...).
        names_b: net B's layer name per layer, where it differs.
        shapes: per layer, the array shapes of A and B (for the record).
        label_a, label_b: what the result calls the two sides.
        layout: recorded in the result's settings.
        chunks: layer name -> the statistics of consecutive chunks of the inputs (their sum is
            the layer's statistics; the analysis then uses their sum); needed by ``bootstrap``.
        baseline: layer name -> the statistics of the untrained baseline pair (the same layers
            of the nets before training, on the same inputs): every layer then carries
            ``untrained`` and, with the rotation null, a verdict. All layers or none.
        baseline_chunks: layer name -> the baseline pair's per-chunk statistics (its bootstrap
            intervals).
        extras: layer name -> fields added to its record as they are (e.g. ``{"top_inputs":
            {...}}``, docs/results-schema.md); checked against the schema.
        front: which front the result is written as (``"python"``, ``"torch"``, ``"dask"``).
        provenance: more of what it takes to repeat the run, added to the result's
            ``provenance`` (which records the version, seeds and CPU itself): ``inputs`` (how
            many inputs were seen), ``datasets`` (``[{"name", "sha256"}]``), anything else as
            JSON values.
        progress: called as ``progress(layer, done, total)`` while the simple matches run
            (``done`` of ``total`` neurons, at most every 50 ms and at a layer's end; Python's
            signals are checked at each call). On Ctrl-C (a ``KeyboardInterrupt`` from the
            check or from ``progress``) the simple matches of that layer and of every later
            one stop and keep what was found (``complete: false``, with a warning), and the
            result is returned; any other exception ``progress`` raises is raised.
        **kwargs: fields of :class:`spanmatch.Options`.

    Raises:
        TypeError: an unknown keyword argument (the message lists the valid ones), a value that
            is not :class:`Stats`.
        ValueError: invalid options (the message names the option), a baseline of other
            neurons or rows than its layer.
    """
    opts = options_from(
        options,
        kwargs,
        "analyse",
        extra=(
            "names_b",
            "shapes",
            "label_a",
            "label_b",
            "layout",
            "chunks",
            "baseline",
            "baseline_chunks",
            "extras",
            "front",
            "provenance",
            "progress",
        ),
    )
    names = list(stats)
    if opts.bootstrap is not None and not chunks:
        raise ValueError("bootstrap: give the per-chunk statistics of every layer in chunks=")

    def per_layer(what: str, given: Optional[Mapping[str, Any]]) -> List[Any]:
        if not given:
            return []
        missing = [n for n in names if n not in given]
        if missing:
            raise ValueError(f"{what}: no entry for layer '{missing[0]}'; give one per layer or none")
        unknown = [n for n in given if n not in stats]
        if unknown:
            raise ValueError(f"{what}: no layer named '{unknown[0]}'; layers: {', '.join(names)}")
        return [given[n] for n in names]

    for n, s in list(stats.items()) + [(f"baseline {k}", v) for k, v in (baseline or {}).items()]:
        if not isinstance(s, Stats):
            raise TypeError(f"stats['{n}']: expected spanmatch.Stats, got {type(s).__name__}")
    names_b = names_b or {}
    shapes = shapes or {}
    report, tables, warns = _native.analyse(
        [stats[n]._native for n in names],
        names,
        [names_b.get(n) if names_b.get(n) != n else None for n in names],
        [[int(v) for v in shapes[n][0]] if n in shapes else [] for n in names],
        [[int(v) for v in shapes[n][1]] if n in shapes else [] for n in names],
        json.dumps(opts.to_dict()),
        front,
        label_a,
        label_b,
        layout,
        [[c._native for c in cs] for cs in per_layer("chunks", chunks)],
        [b._native for b in per_layer("baseline", baseline)],
        [[c._native for c in cs] for cs in per_layer("baseline_chunks", baseline_chunks)],
        None if not extras else json.dumps(extras, default=_json_default),
        progress,
    )
    out = json.loads(report)
    _provenance.merge(out, provenance)
    return Result(out, tables, _emit(warns))


def _json_default(x: Any) -> Any:
    """numpy values in ``extras`` as plain JSON."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"extras: {type(x).__name__} is not JSON serialisable")


def _chunk_bounds(n: int, k: int) -> List[int]:
    """Start of each of ``k`` chunks of ``n`` inputs (input i is in chunk ⌊i·k/n⌋, the rule of
    the engine), and ``n`` at the end."""
    return [(c * n + k - 1) // k for c in range(k)] + [n]


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def compare(
    a: Union[ArrayLike, Mapping[str, ArrayLike], PathLike],
    b: Union[ArrayLike, Mapping[str, ArrayLike], PathLike],
    options: Optional[Options] = None,
    *,
    layout: str = "nchw",
    layers: Optional[Sequence[str]] = None,
    baseline: Optional[Tuple[Any, Any]] = None,
    provenance: Optional[Mapping[str, Any]] = None,
    **kwargs: Any,
) -> Result:
    """To what extent do two nets learn the same representation? Maximum span matches per layer.

    Three lines in a notebook::

        import spanmatch
        result = spanmatch.compare(acts_a, acts_b)   # arrays, dicts of arrays, or file paths
        result                                       # the table; result["fc1"].matches[0].a ...

    Args:
        a: net A's activations: one array (``[N, C]``, ``[N, C, ...]``, or channels-last with
            ``layout="nhwc"``; numpy, CPU torch tensors, anything with ``__array__`` or
            ``__dlpack__``; float16/bfloat16/float32/float64; C or Fortran order, read in place),
            a dict layer name -> array, or the path of a .npy/.npz/.safetensors file.
        b: net B's activations on the same inputs in the same order, in the same form.
        options: what to compute: a :class:`spanmatch.Options` (or a dict of its fields); None:
            the defaults (ε = 0.15, 0.2, 0.25, 0.3, 0.5; linear CKA; the centred match beside
            the uncentred one).
        layout: ``"nchw"`` (channels first) or ``"nhwc"`` (channels last) for rank ≥ 3 arrays.
        layers: the layers to compare (dicts and files); default: every layer of ``a`` also in
            ``b``, in ``a``'s order.
        baseline: the untrained baseline, ``(a0, b0)``: the activations of the same two nets
            before training (or any reference pair) on the same inputs, in the form of ``a`` and
            ``b`` (arrays, dicts of arrays, or two file paths). Every layer then carries
            ``untrained`` (its mms at every ε, CKA, centred mms, intervals with ``bootstrap``,
            trained minus untrained) and, with ``null="rotate"``, a ``verdict``.
        provenance: more of what it takes to repeat the run (``datasets``:
            ``[{"name", "sha256"}]``, anything else as JSON values), added to the result's
            ``provenance``, which records the version, seeds, CPU and, for arrays, the number of
            inputs itself.
        **kwargs: fields of :class:`spanmatch.Options`, overriding ``options``: ``eps``,
            ``measures``, ``dead``, ``tol``, ``center``, ``null`` / ``null_draws``,
            ``bootstrap`` / ``chunks``, ``simple`` / ``orders``, ``seed``, ``curve``, ... (see
            :class:`spanmatch.Options` for each). ``curves`` is accepted for ``curve``.
            ``top_inputs=k`` (arrays only) keeps, for every neuron, the k inputs with the largest
            response (its maximum over positions), ties by the lower index: what
            :meth:`Result.report` and ``Result.plot(kind="neurons")`` show.

    Returns:
        A :class:`Result`; ``result.to_dict()`` is the one results schema (that of ``spanmatch
        compare --json``; docs/results-schema.md).

    Raises:
        FileNotFoundError: a path that does not exist.
        TypeError: an unsupported element type or argument type, an unknown keyword argument
            (the message lists the valid ones).
        ValueError: NaN/Inf (with its position), mismatched rows, wrong rank, ε outside [0, 1],
            unknown layers or measures.
    """
    opts = options_from(options, kwargs, "compare", extra=("layout", "layers", "baseline", "provenance"))
    if _is_path(a) or _is_path(b):
        if not (_is_path(a) and _is_path(b)):
            raise TypeError("compare: give two file paths, or two arrays / dicts of arrays, not a mix")
        if opts.top_inputs:
            raise ValueError(
                "top_inputs: needs the activations in memory; load the files (numpy.load) and pass the arrays"
            )
        base = None
        if baseline is not None:
            if len(baseline) != 2 or not all(_is_path(x) for x in baseline):
                raise TypeError("baseline: with file paths for a and b, give two file paths (a0, b0)")
            base = (os.fspath(baseline[0]), os.fspath(baseline[1]))
        report, tables, warns = _native.compare_files(
            os.fspath(a),
            os.fspath(b),
            json.dumps(opts.to_dict()),
            layout,
            list(layers or []),
            None,
            None,
            16,
            False,
            base,
        )
        out = json.loads(report)
        _provenance.merge(out, provenance)
        return Result(out, tables, _emit(warns))

    names = _layer_names(a, b, layers)
    stats, chunk_stats, shapes = _accumulate(a, b, names, layout, opts, "")
    extras: Optional[Dict[str, Dict[str, Any]]] = None
    if opts.top_inputs:
        extras = {}
        for n in names:
            xa, bf_a = as_activations(a[n] if isinstance(a, Mapping) else a, "a")
            xb, bf_b = as_activations(b[n] if isinstance(b, Mapping) else b, "b")
            extras[n] = {"top_inputs": _topk.top_inputs_record(xa, xb, int(opts.top_inputs), layout, (bf_a, bf_b))}
    prov: Dict[str, Any] = dict(provenance or {})
    first = next(iter(shapes.values()), None)
    if first is not None and len(first[0]) > 0:
        prov.setdefault("inputs", int(first[0][0]))
    base_stats: Optional[Dict[str, Stats]] = None
    base_chunks: Optional[Dict[str, List[Stats]]] = None
    if baseline is not None:
        if not (isinstance(baseline, (tuple, list)) and len(baseline) == 2):
            raise TypeError("baseline: give the untrained nets' activations as a pair (a0, b0)")
        a0, b0 = baseline
        if isinstance(a0, Mapping) != isinstance(a, Mapping) or isinstance(b0, Mapping) != isinstance(b, Mapping):
            raise TypeError("baseline: (a0, b0) must have the form of a and b (arrays, or dicts of arrays)")
        if isinstance(a0, Mapping):
            for n in names:
                for side, d in (("a0", a0), ("b0", b0)):
                    if n not in d:
                        raise ValueError(f"baseline: layer '{n}' is not in {side} (the untrained net's activations)")
        base_stats, bc, base_shapes = _accumulate(a0, b0, names, layout, opts, "baseline: ")
        base_chunks = bc or None
        for n in names:
            if tuple(base_shapes[n][0]) != tuple(shapes[n][0]) or tuple(base_shapes[n][1]) != tuple(shapes[n][1]):
                raise ValueError(
                    f"baseline: layer '{n}' has shapes {tuple(base_shapes[n][0])} and {tuple(base_shapes[n][1])} "
                    f"in (a0, b0) but {tuple(shapes[n][0])} and {tuple(shapes[n][1])} in (a, b); the baseline "
                    "must be the same layers on the same inputs"
                )
    result = analyse(
        stats,
        opts,
        shapes=shapes,
        layout=layout,
        chunks=chunk_stats or None,
        baseline=base_stats,
        baseline_chunks=base_chunks,
        extras=extras,
        provenance=prov,
    )
    return result


def _layer_names(a: Any, b: Any, layers: Optional[Sequence[str]]) -> List[str]:
    """The layers to compare of two arrays (``["layer"]``) or two dicts of arrays."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("compare: a and b must both be arrays or both be dicts of layer name -> array")
    if not isinstance(a, Mapping):
        return ["layer"]
    assert isinstance(b, Mapping)
    if layers is not None:
        names = list(layers)
        for n in names:
            if n not in a and n not in b:
                raise ValueError(f"layer '{n}' is in neither a nor b")
            if n not in a:
                raise ValueError(f"layer '{n}' is in b but not in a")
            if n not in b:
                raise ValueError(f"layer '{n}' is in a but not in b")
        return names
    names = [n for n in a if n in b]
    if not names:
        raise ValueError(f"no layer to compare: a has {sorted(a)} and b has {sorted(b)}, none in common")
    return names


def _accumulate(
    a: Any, b: Any, names: List[str], layout: str, opts: Options, what: str
) -> Tuple[Dict[str, Stats], Dict[str, List[Stats]], Dict[str, Tuple[Sequence[int], Sequence[int]]]]:
    """The statistics of every layer pair of two arrays / dicts of arrays (per chunk of inputs
    too, with a bootstrap), and the shapes; ``what`` prefixes error messages."""
    stats: Dict[str, Stats] = {}
    chunk_stats: Dict[str, List[Stats]] = {}
    shapes: Dict[str, Tuple[Sequence[int], Sequence[int]]] = {}
    bootstrap, chunks = opts.bootstrap, int(opts.chunks)
    if bootstrap is not None and chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    for name in names:
        xa, xb = (a[name], b[name]) if isinstance(a, Mapping) else (a, b)
        va, vb = as_activations(xa, "a")[0], as_activations(xb, "b")[0]
        acc = Accumulator(layout)
        try:
            if bootstrap is None:
                acc.update(xa, xb)
            else:
                n = len(va)
                if chunks > n:
                    raise ValueError(f"{chunks} chunks for the bootstrap, but only {n} inputs; use at most {n} chunks")
                if len(vb) != n:
                    raise ValueError(f"a has {n} inputs but b has {len(vb)}")
                bounds = _chunk_bounds(n, chunks)
                parts = []
                for lo, hi in zip(bounds, bounds[1:]):
                    part = Accumulator(layout).update(xa[lo:hi], xb[lo:hi])
                    parts.append(part.finish())
                    acc.merge(part)
                chunk_stats[name] = parts
        except (ValueError, TypeError) as e:
            raise type(e)(f"{what}layer '{name}': {e}") from None
        stats[name] = acc.finish()
        shapes[name] = (np.shape(va), np.shape(vb))
    return stats, chunk_stats, shapes
