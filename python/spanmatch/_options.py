"""The one options object of an analysis, shared by every front (numpy, Dask, PyTorch, the CLI).

:class:`Options` has exactly the fields of the engine's ``spanmatch_engine::Options``: it is sent
to the engine whole (as JSON) and written into every result (``result.to_dict()["options"]``).
Adding a control to spanmatch means adding a field there and here, not a parameter to every
function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["Options", "DEFAULT_EPS", "options_from"]

#: The ε values used when none are given (those of the paper's figures).
DEFAULT_EPS: Tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.5)


def _eps_tuple(eps: Union[float, Iterable[float]]) -> Tuple[float, ...]:
    if isinstance(eps, (int, float)):
        return (float(eps),)
    return tuple(float(e) for e in eps)


def _names(measures: Union[str, Iterable[str], None]) -> Tuple[str, ...]:
    if measures is None:
        return ()
    if isinstance(measures, str):
        return (measures,)
    return tuple(str(m) for m in measures)


@dataclass(frozen=True)
class Options:
    """What an analysis computes for every layer pair. Every field has a default; pass an
    ``Options`` (or keyword arguments with these names) to :func:`spanmatch.compare`,
    :func:`spanmatch.analyse`, :func:`spanmatch.dask.compare` or :func:`spanmatch.torch.compare`.

    Attributes:
        eps: the ε values, each in [0, 1]: the largest sine allowed between a neuron's
            activation vector and the span of the other net's matched neurons. Every per-ε list
            of a result follows this order.
        main_eps: the ε of the table's interval, control and verdict columns, one of ``eps``;
            None: 0.5 when it is in ``eps``, else the largest.
        dead: dead (all-zero) neurons: ``"drop"`` leaves them out of matches, counting them in
            mms's denominator (the reference code); ``"match"`` puts them in every match.
        tol: sine tolerance (None: 1e-6): sines at or below it count as 0.
        measures: basis-invariant measures from the same statistics (``"cka"``, ``"cca"``,
            ``"svcca"``, ``"pwcca"``, ``"procrustes"``; ``"match"`` is always computed).
        center: also the match of the mean-centred activations, beside the paper's uncentred
            one (``LayerResult.centered``; on by default). Uncentred asks whether a neuron's
            whole vector, its mean included, lies in the other span; centred ignores a shared
            constant offset, the question CKA and CCA ask.
        null: ``"rotate"``: the neuron-basis null (``LayerResult.null``): mms against net B's
            layer rotated by ``null_draws`` Haar-random orthogonal matrices, which keeps its span
            and destroys its neuron basis.
        null_draws: rotations of the null.
        null_seed: seed of the rotations (None: ``seed``).
        bootstrap: resamples of a bootstrap over ``chunks`` chunks of consecutive inputs
            (``LayerResult.intervals``: 95% intervals of mms at each ε and of linear CKA). The
            chunks' statistics are kept apart in the same pass: chunks x (n1+n2)² x 8 bytes per
            layer.
        chunks: chunks of inputs for ``bootstrap`` (the rows of one input stay together).
        bootstrap_seed: seed of the resampling (None: ``seed``).
        simple: also the simple matches of every layer at this ε.
        orders: seeded random neuron orders tried by the simple matches besides the
            deterministic one.
        simple_seed: seed of those orders (None: ``seed``).
        witnesses: ``{"a": [...], "b": [...]}``: the neurons whose simple matches are wanted
            (None: every neuron of the maximum match).
        top_inputs: inputs kept per neuron by the fronts that track what neurons respond to
            (0: none).
        pool: ``"mean"`` or ``"max"``: pool positions/tokens into one row per input (fronts that
            capture activations); None: every position is a row.
        seed: the seed of every random choice whose own seed is not given (same seed, same
            result on every machine).
        curve: also sample each ε-profile on a 0.01 grid (``Result.curves``).
    """

    eps: Tuple[float, ...] = DEFAULT_EPS
    main_eps: Optional[float] = None
    dead: str = "drop"
    tol: Optional[float] = None
    measures: Tuple[str, ...] = ("cka",)
    center: bool = True
    null: Optional[str] = None
    null_draws: int = 10
    null_seed: Optional[int] = None
    bootstrap: Optional[int] = None
    chunks: int = 20
    bootstrap_seed: Optional[int] = None
    simple: Optional[float] = None
    orders: int = 0
    simple_seed: Optional[int] = None
    witnesses: Optional[Mapping[str, Sequence[int]]] = field(default=None, hash=False)
    top_inputs: int = 0
    pool: Optional[str] = None
    seed: int = 0
    curve: bool = False

    def __post_init__(self) -> None:
        # Normalise the forms a notebook passes: one ε, one measure name, lists.
        object.__setattr__(self, "eps", _eps_tuple(self.eps))
        object.__setattr__(self, "measures", _names(self.measures))
        if self.witnesses is not None:
            w = dict(self.witnesses)
            unknown = sorted(set(w) - {"a", "b"})
            if unknown:
                raise ValueError(f"witnesses: unknown side(s) {unknown}; use {{'a': [...], 'b': [...]}}")
            object.__setattr__(
                self, "witnesses", {k: tuple(int(i) for i in w.get(k, ())) for k in ("a", "b")}
            )

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        """The option names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> Dict[str, Any]:
        """Plain Python data with the fields of the engine's options (its JSON form)."""
        d: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Mapping):
                v = {k: list(x) for k, x in v.items()}
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Options":
        """Options from :meth:`to_dict` (or a results file's ``"options"``); unknown names raise
        ``TypeError``."""
        _check_names(d, cls.names(), "Options")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "Options":
        """A copy with some fields changed; an unknown name raises ``TypeError``."""
        _check_names(changes, self.names(), "Options.replace")
        return dataclasses.replace(self, **changes)


def _check_names(given: Iterable[str], valid: Sequence[str], where: str) -> None:
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise TypeError(
            f"{where}: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)}; valid options: {', '.join(valid)}"
        )


#: Keyword arguments accepted under another name, for code written before :class:`Options`.
_ALIASES = {"curves": "curve"}


def options_from(
    options: Optional[Union[Options, Mapping[str, Any]]],
    kwargs: Mapping[str, Any],
    where: str,
    extra: Sequence[str] = (),
) -> Options:
    """The options of a call: ``options`` (an :class:`Options`, a dict of its fields, or None
    for the defaults) with the keyword arguments ``kwargs`` overriding fields. An unknown keyword
    raises ``TypeError`` naming it and listing the valid ones (``extra``: the function's own
    keyword arguments, listed too)."""
    if options is None:
        base = Options()
    elif isinstance(options, Options):
        base = options
    elif isinstance(options, Mapping):
        base = Options.from_dict(options)
    else:
        raise TypeError(
            f"{where}: options must be a spanmatch.Options, a dict of its fields or None, "
            f"got {type(options).__name__}"
        )
    changes = {_ALIASES.get(k, k): v for k, v in kwargs.items()}
    unknown = [k for k in kwargs if _ALIASES.get(k, k) not in Options.names()]
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}; valid keywords: "
            f"{', '.join(list(extra) + list(Options.names()))}"
        )
    return dataclasses.replace(base, **changes) if changes else base
