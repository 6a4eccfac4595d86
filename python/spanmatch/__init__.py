"""spanmatch: to what extent do two neural networks learn the same representation?

Exact maximum and simple ε-approximate span matches between the neurons of two nets (Wang et
al., NeurIPS 2018), with the neuron indices, plus linear CKA and the CCA family from the same
single streamed pass. The engine is in Rust; this package is its Python front.

Three lines in a notebook::

    import spanmatch
    result = spanmatch.compare(acts_a, acts_b)   # arrays, dicts of arrays, or file paths
    result                                       # the table; result.plot() draws it

Every analysis option (ε values, measures, controls, simple matches, seeds) is a field of
:class:`Options`, passed whole or as keyword arguments: ``spanmatch.compare(a, b,
null="rotate")`` equals ``spanmatch.compare(a, b, spanmatch.Options(null="rotate"))``.

Streaming (batches, several processes)::

    acc = spanmatch.Accumulator()
    for xa, xb in batches:
        acc.update(xa, xb)
    stats = acc.finish()
    stats.max_match(0.25).a                      # net A's neurons in the maximum match

Fronts for other tools: :mod:`spanmatch.torch` (two models and a DataLoader, hooks, token
layers, layer x layer, torch.distributed; ``pip install spanmatch[torch]``) and
:mod:`spanmatch.dask` (row-chunked dask arrays on a cluster; ``spanmatch[dask]``).
"""

from ._native import __version__
from ._api import DEFAULT_EPS, Accumulator, Stats, analyse, as_activations, compare, flat_length
from ._options import Options
from ._result import LayerResult, MaxMatch, Profile, Result, SimpleMatch

__all__ = [
    "__version__",
    "DEFAULT_EPS",
    "Accumulator",
    "Options",
    "Stats",
    "analyse",
    "as_activations",
    "compare",
    "flat_length",
    "LayerResult",
    "MaxMatch",
    "Profile",
    "Result",
    "SimpleMatch",
]
