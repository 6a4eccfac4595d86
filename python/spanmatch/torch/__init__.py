"""spanmatch for PyTorch: compare two models on a DataLoader, streamed, with the controls.

Which layers, and which neurons, of two models learned the same thing, and how much of it did
training create? Forward hooks on the chosen modules feed, batch by batch, the exact statistics
of every layer pair (the float64 Gram matrix of the joint rows ``[A | B]``, column sums and
row-norm moments) on the models' device; nothing but one batch of activations and the
statistics is ever held. The engine then finds the maximum ε-approximate span matches (neuron
indices at every ε), linear CKA and the controls, all from the same statistics.

Example::

    import spanmatch.torch
    result = spanmatch.torch.compare(model_a, model_b, loader)   # every activation module
    result                                                       # the table
    result["features.3"].matches[0].a                            # A's matched neurons
    result = spanmatch.torch.compare(
        model_a, model_b, loader,
        baseline="reinit",          # the same nets untrained, in the same pass
        null="rotate",              # the neuron-basis null
        bootstrap=200, chunks=20,   # intervals over chunks of consecutive batches
        top_inputs=8,               # what each neuron responds to most
    )
    result = spanmatch.torch.compare(model_a, model_b, loader, cross=True, pool="mean")
    result.plot(kind="cross")                                    # layer x layer heatmaps

The steps, one file each: ``_layers`` (which modules are hooked), ``_capture`` (hooks, rows,
pooling, finite checks), ``_plan`` (views, memory budget, passes), ``_accumulate`` (the
statistics of layer pairs and groups, chunks), ``_distributed`` (the reduction over ranks),
``_baseline`` (the untrained pair), ``_top_inputs`` (top inputs per neuron), ``_analysis``
(the one call into the engine's analysis) and ``_compare`` (the pass itself).

Rows: an output ``[B, C]`` gives one row per input; ``[B, C, H, W, ...]`` (convolutions) one row
per (input, position) with the channels as neurons; ``[B, T, C]`` (tokens, the transformers
convention) one row per token, padding tokens left out using the batch's ``attention_mask``.

Several processes (``torch.distributed`` initialised): every rank feeds its own shard; the
statistics are summed with ``all_reduce`` and every rank returns the same result, equal to one
process over all the data (up to summation order, about 1e-15 relative). Shards may be uneven,
even empty.

Needs ``pip install spanmatch[torch]`` (torch, tqdm).
"""

from __future__ import annotations

from .._cross import CrossResult
from ._baseline import reinit
from ._compare import compare, estimate_memory
from ._layers import activation_modules, resolve_layers
from ._plan import MemoryEstimate
from ._top_inputs import TopInputs

__all__ = [
    "compare",
    "activation_modules",
    "resolve_layers",
    "reinit",
    "estimate_memory",
    "CrossResult",
    "MemoryEstimate",
    "TopInputs",
]
