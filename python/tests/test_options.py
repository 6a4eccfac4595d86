"""The one options object: spanmatch.Options, passed whole or as keyword arguments."""

from __future__ import annotations

import json

import numpy as np
import pytest

import spanmatch
from conftest import planted


def records(r: spanmatch.Result) -> list:
    """The per-layer records of a result."""
    return [l.record for l in r.layers]


def test_options_fields_defaults_and_json_form() -> None:
    o = spanmatch.Options()
    assert o.center is True and o.eps == spanmatch.DEFAULT_EPS and o.measures == ("cka",)
    d = o.to_dict()
    assert list(d) == list(spanmatch.Options.names())
    assert spanmatch.Options.from_dict(json.loads(json.dumps(d))) == o
    # A notebook's shorthand forms are normalised.
    o2 = spanmatch.Options(eps=0.25, measures="cca", witnesses={"a": [3]})
    assert o2.eps == (0.25,) and o2.measures == ("cca",) and o2.witnesses == {"a": (3,), "b": ()}
    assert o2.replace(seed=4).seed == 4 and o2.seed == 0
    with pytest.raises(TypeError, match="unknown option 'sead'.*valid options: eps, main_eps"):
        o.replace(sead=4)
    with pytest.raises(TypeError, match="unknown option 'nul'"):
        spanmatch.Options.from_dict({"nul": "rotate"})
    with pytest.raises(ValueError, match="witnesses: unknown side"):
        spanmatch.Options(witnesses={"c": [1]})


def test_options_whole_equal_keyword_arguments_and_keywords_override() -> None:
    a, b = planted(rows=300, noise=0.05)
    opts = spanmatch.Options(eps=(0.1, 0.3), null="rotate", null_draws=3, seed=2, center=False)
    whole = records(spanmatch.compare(a, b, opts))
    kw = records(spanmatch.compare(a, b, eps=(0.1, 0.3), null="rotate", null_draws=3, seed=2, center=False))
    assert whole == kw
    # A keyword overrides the object's field.
    r = spanmatch.compare(a, b, opts, center=True)
    assert r["layer"].centered is not None
    assert spanmatch.compare(a, b, opts)["layer"].centered is None
    # A dict of fields works like the object.
    assert records(spanmatch.compare(a, b, opts.to_dict())) == whole
    # `curves` still means `curve`.
    assert spanmatch.compare(a, b, curves=True).curves is not None


def test_unknown_keyword_names_it_and_lists_the_valid_ones() -> None:
    a, b = planted(rows=50)
    with pytest.raises(TypeError, match=r"compare\(\) got an unexpected keyword argument 'null_draw'") as e:
        spanmatch.compare(a, b, null_draw=3)
    assert "null_draws" in str(e.value) and "layout" in str(e.value)
    st = spanmatch.Accumulator().update(a, b).finish()
    with pytest.raises(TypeError, match="unexpected keyword argument 'centre'"):
        st.result(centre=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epsilon'"):
        spanmatch.analyse({"x": st}, epsilon=0.3)
    with pytest.raises(TypeError, match="options must be a spanmatch.Options"):
        spanmatch.compare(a, b, (0.25,))


def test_bad_option_values_name_the_option() -> None:
    a, b = planted(rows=50)
    for kw, want in [
        ({"simple": 1.5}, r"simple: ε = 1.5 is outside \[0, 1\]"),
        ({"simple": -0.2}, r"simple: ε = -0.2 is outside"),
        ({"main_eps": 0.7}, r"main_eps: ε = 0.7 is not one of"),
        ({"null": "shuffle"}, "null: 'shuffle' is not a control"),
        ({"null": "rotate", "null_draws": 0}, "null_draws must be at least 1"),
        ({"pool": "median"}, "pool: 'median' is not a pooling"),
        ({"bootstrap": 0}, "bootstrap must be at least 1"),
        ({"witnesses": {"a": [1]}}, "witnesses needs simple"),
    ]:
        with pytest.raises(ValueError, match=want):
            spanmatch.compare(a, b, **kw)


def test_stats_result_and_analyse_take_the_same_options() -> None:
    a, b = planted(rows=200, noise=0.02)
    st = spanmatch.Accumulator().update(a, b).finish()
    opts = spanmatch.Options(eps=(0.2,), measures=("cka", "cca"), simple=0.2)
    r1 = records(st.result(opts, name="fc"))
    r2 = records(spanmatch.analyse({"fc": st}, opts))
    r3 = records(spanmatch.compare({"fc": a}, {"fc": b}, opts))
    assert r1 == r2
    for x, y in zip(r1, r3):
        assert x["matches"] == y["matches"]
        assert np.isclose(x["measures"]["cka_linear"], y["measures"]["cka_linear"], rtol=1e-12)
