"""spanmatch.torch: the untrained baseline ("reinit" copies, given models), and that the user's
models come back as they were, after success and after errors in the middle of the pass."""

from __future__ import annotations

import math
import warnings
from typing import List

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
from torch import nn  # noqa: E402

import spanmatch  # noqa: E402
import spanmatch.torch as smt  # noqa: E402

from test_torch import SmallCNN, TokenNet, by_hand, loader, no_hooks, random_seqs, token_batches  # noqa: E402
from test_torch import _tiny_bert as tiny_bert, _tiny_gpt2 as tiny_gpt2  # noqa: E402

EPS = (0.15, 0.2, 0.25, 0.3, 0.5)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def trained(make, seed: int) -> nn.Module:
    """A model moved away from its initialisation (a stand-in for training)."""
    torch.manual_seed(seed)
    m = make()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2, generator=g)
                mod.running_var.uniform_(0.5, 1.5, generator=g)
    return m


def fresh(make, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return make()


def same_state(x: nn.Module, y: nn.Module) -> List[str]:
    """Names of the state_dict entries that differ (bitwise)."""
    sx, sy = x.state_dict(), y.state_dict()
    assert list(sx) == list(sy)
    return [k for k in sx if not torch.equal(sx[k], sy[k])]


class Snapshot:
    """Everything about a model that compare must leave as it was."""

    def __init__(self, *models: nn.Module) -> None:
        self.models = models
        self.state = [{k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()} for m in models]
        self.modes = [[x.training for x in m.modules()] for m in models]
        self.grad = [[p.requires_grad for p in m.parameters()] for m in models]
        self.hooks = [
            [(len(x._forward_hooks), len(x._forward_pre_hooks)) for x in m.modules()] for m in models
        ]

    def check(self) -> None:
        for m, st, modes, grad, hooks in zip(self.models, self.state, self.modes, self.grad, self.hooks):
            now = m.state_dict(keep_vars=True)
            assert list(now) == list(st)
            for k, v in st.items():
                assert now[k].dtype == v.dtype and torch.equal(now[k].detach(), v), k
            assert [x.training for x in m.modules()] == modes
            assert [p.requires_grad for p in m.parameters()] == grad
            assert [(len(x._forward_hooks), len(x._forward_pre_hooks)) for x in m.modules()] == hooks


class Block(nn.Module):
    """torchvision's BasicBlock, built in code (no custom initialisation)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 8, 1))
        self.layer2 = nn.Sequential(Block(8, 16, 2), Block(16, 16, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(self.pool(x).flatten(1))


class TinyVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 2 * 2, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class AttnNet(nn.Module):
    """A module with parameters of its own and children (MultiheadAttention: its out_proj is
    built, then its own in_proj initialised): re-initialisation must run children first."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.act = nn.GELU()

    def forward(self, x):
        h = self.inp(x)
        return self.act(self.norm(self.attn(h, h, h)[0]))


# ------------------------------------------------------------------------------------------
# reinit
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [SmallCNN, TinyVGG, TinyResNet, AttnNet, tiny_bert, tiny_gpt2], ids=["cnn", "vgg", "resnet", "attn", "bert", "gpt2"]
)
def test_reinit_equals_a_freshly_constructed_model(make):
    """A "reinit" copy of a trained model is bitwise a fresh model built under the same seed
    (weights, biases, BatchNorm statistics), and the trained model is left as it was."""
    t = trained(make, 9)
    snap = Snapshot(t)
    c = smt.reinit(t, seed=5)
    snap.check()
    assert c is not t
    assert same_state(c, fresh(make, 5)) == []
    # Not the trained weights, and another seed gives other weights.
    params = [k for k, v in c.named_parameters()]
    diff = set(same_state(c, t))
    assert all(k in diff for k in params), [k for k in params if k not in diff]
    assert len(same_state(smt.reinit(t, seed=6), c)) > 0


def test_reinit_where_construction_order_differs():
    """nn.TransformerEncoder deep-copies one layer at construction (one draw for all layers);
    "reinit" resets each layer (one draw each), so the copy cannot equal a fresh model. It is
    re-initialised all the same: no parameter keeps its trained value, and every weight's
    spread matches a fresh model's."""
    t = trained(TokenNet, 3)
    c = smt.reinit(t, seed=4)
    f = fresh(TokenNet, 4)
    assert same_state(c, f) != []
    tp, cp, fp = dict(t.named_parameters()), dict(c.named_parameters()), dict(f.named_parameters())
    for k in cp:
        assert not torch.equal(cp[k], tp[k]), k
        if cp[k].dim() == 2 and cp[k].numel() >= 256:
            assert abs(float(cp[k].detach().std()) / float(fp[k].detach().std()) - 1) < 0.15, k
        else:  # biases, LayerNorm: initialised to constants, or tiny
            assert abs(float(cp[k].detach().abs().mean()) - float(fp[k].detach().abs().mean())) < 0.1 + 0.3 * float(fp[k].detach().abs().mean()), k


def test_reinit_transformers_fallback_when_the_config_no_longer_fits():
    """A GPT-2 whose first MLP was replaced after construction no longer fits its config: the
    copy is re-initialised in place (reset_parameters, then the model's own init_weights). No
    parameter keeps its trained value; the weight spreads of the unchanged part match a fresh
    model's, and the replaced MLP gets GPT-2's scale (std 0.02 or less), not PyTorch's."""
    from transformers.pytorch_utils import Conv1D

    t = trained(tiny_gpt2, 2)
    t.h[0].mlp.c_fc, t.h[0].mlp.c_proj = Conv1D(24, 16), Conv1D(16, 24)
    with torch.no_grad():
        for p in t.h[0].mlp.parameters():
            p.add_(0.3)
    c = smt.reinit(t, seed=1)
    f = fresh(tiny_gpt2, 1)
    tp, cp, fp = dict(t.named_parameters()), dict(c.named_parameters()), dict(f.named_parameters())
    for k in cp:
        assert not torch.equal(cp[k], tp[k]), k
        if k.startswith("h.0.mlp.") and cp[k].dim() == 2:
            assert 0.003 < float(cp[k].detach().std()) < 0.03, k
        elif cp[k].dim() == 2:
            assert abs(float(cp[k].detach().std()) / float(fp[k].detach().std()) - 1) < 0.15, k
        else:
            assert torch.equal(cp[k], torch.zeros_like(cp[k])) or torch.equal(cp[k], torch.ones_like(cp[k])), k


def test_reinit_warns_naming_modules_left_as_they_were():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.full((4,), 3.0))

        def forward(self, x):
            return torch.relu(self.lin(x)) * self.scale

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = Scaled()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.body(x))

    t = Net()
    with pytest.warns(UserWarning, match=r"module\(s\) body of model a have no reset_parameters\(\)"):
        c = smt.reinit(t, seed=0)
    assert torch.equal(c.body.scale, t.body.scale)
    assert not torch.equal(c.body.lin.weight, t.body.lin.weight)


def test_reinit_errors():
    class OnlyRaw(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, 3))
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x @ self.w)

    with pytest.raises(ValueError, match="no parameter of model a can be re-initialised"):
        smt.reinit(OnlyRaw())
    with pytest.raises(ValueError, match="model a has no parameters"):
        smt.reinit(nn.ReLU())
    a, b = OnlyRaw(), OnlyRaw()
    snap = Snapshot(a, b)
    with pytest.raises(ValueError, match="no parameter of model a can be re-initialised"):
        smt.compare(a, b, [torch.randn(4, 3)], baseline="reinit", progress=False)
    snap.check()
    assert no_hooks(a, b)


# ------------------------------------------------------------------------------------------
# The baseline pair in compare
# ------------------------------------------------------------------------------------------


def test_baseline_equals_the_untrained_pair_compared_alone():
    """The baseline pair runs on the same batches in the same pass: its numbers equal a plain
    compare of the two untrained models; "reinit" equals the given pair of fresh models."""
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    a0, b0 = fresh(SmallCNN, 10), fresh(SmallCNN, 11)
    data = loader(n=40, batch=16)
    snap = Snapshot(a, b, a0, b0)
    r = smt.compare(a, b, data, baseline=(a0, b0), progress=False)
    snap.check()
    alone = smt.compare(a0, b0, data, progress=False)
    plain = smt.compare(a, b, data, progress=False)
    for l, u, p in zip(r.layers, alone.layers, plain.layers):
        np.testing.assert_array_equal(l.mms, p.mms)
        ut = l.record["untrained"]
        np.testing.assert_array_equal(ut["mms"], u.mms)
        assert math.isclose(ut["measures"]["cka_linear"], u.cka, rel_tol=1e-12)
        np.testing.assert_array_equal(ut["centered_mms"], [m.mms for m in u.centered])
        np.testing.assert_allclose(ut["trained_minus_untrained"], l.mms - u.mms, atol=1e-15)
    # "reinit" with seed 10: A's copy is fresh(10), B's fresh(11): the same numbers.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r2 = smt.compare(a, b, data, baseline="reinit", seed=10, progress=False)
    for l, l2 in zip(r.layers, r2.layers):
        assert l.record["untrained"] == l2.record["untrained"]
    snap.check()
    assert no_hooks(a, b, a0, b0)


def test_baseline_of_another_architecture_is_an_error():
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    snap = Snapshot(a, b)
    wide = SmallCNN(width=10)
    with pytest.raises(ValueError, match=r"baseline: 'features.0.weight' has shape \[10, 3, 3, 3\] in model a0 but \[8, 3, 3, 3\] in model a"):
        smt.compare(a, b, loader(), baseline=(wide, SmallCNN()), progress=False)
    with pytest.raises(ValueError, match="model b0 has no 'features.0.weight'"):
        smt.compare(a, b, loader(), baseline=(SmallCNN(), nn.Sequential(nn.Linear(3, 3))), progress=False)
    with pytest.raises(ValueError, match="baseline: 'random'"):
        smt.compare(a, b, loader(), baseline="random", progress=False)
    with pytest.raises(TypeError, match="baseline: expected"):
        smt.compare(a, b, loader(), baseline=SmallCNN(), progress=False)
    snap.check()
    assert no_hooks(a, b)


# ------------------------------------------------------------------------------------------
# Controls through the engine: equal to the numpy front on hand-captured activations
# ------------------------------------------------------------------------------------------


def test_controls_equal_the_numpy_front():
    """null, centred, bootstrap intervals, simple matches, and the untrained pair: the torch
    front equals spanmatch.compare on the same activations captured by hand (same seed; chunks
    of whole batches that hold the same inputs as the numpy front's chunks)."""
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    a0, b0 = fresh(SmallCNN, 10), fresh(SmallCNN, 11)
    data = loader(n=48, batch=12)  # 4 batches; chunks=2 -> inputs 0-23, 24-47
    kw = dict(null="rotate", null_draws=6, bootstrap=40, chunks=2, simple=0.5, center=True, seed=3)
    r = smt.compare(a, b, data, baseline=(a0, b0), progress=False, **kw)
    names = r.names
    ha, hb = by_hand(a, data, names), by_hand(b, data, names)
    ref = spanmatch.compare(ha, hb, eps=EPS, **kw)
    ref0 = spanmatch.compare(by_hand(a0, data, names), by_hand(b0, data, names), eps=EPS, center=True, bootstrap=40, chunks=2, seed=3)
    for l, e, e0 in zip(r.layers, ref.layers, ref0.layers):
        np.testing.assert_array_equal(l.mms, e.mms)
        np.testing.assert_allclose(l.thresholds_a, e.thresholds_a, atol=1e-10)
        assert math.isclose(l.cka, e.cka, rel_tol=1e-10)
        assert [m.mms for m in l.centered] == [m.mms for m in e.centered]
        for m1, m2 in zip(l.centered, e.centered):
            np.testing.assert_array_equal(m1.a, m2.a)
            np.testing.assert_array_equal(m1.b, m2.b)
        for n1, n2 in zip(l.null, e.null):
            assert n1["values"] == n2["values"] and n1["p_value"] == n2["p_value"]
        i1, i2 = l.intervals, e.intervals
        assert (i1["chunks"], i1["resamples"], i1["seed"]) == (2, 40, 3) == (i2["chunks"], i2["resamples"], i2["seed"])
        assert i1["mms"] == i2["mms"]
        assert math.isclose(i1["cka_linear"]["lo"], i2["cka_linear"]["lo"], rel_tol=1e-10)
        assert math.isclose(i1["cka_linear"]["hi"], i2["cka_linear"]["hi"], rel_tol=1e-10)
        assert [(s.a.tolist(), s.b.tolist()) for s in l.simple] == [(s.a.tolist(), s.b.tolist()) for s in e.simple]
        u = l.record["untrained"]
        np.testing.assert_array_equal(u["mms"], e0.mms)
        assert math.isclose(u["measures"]["cka_linear"], e0.cka, rel_tol=1e-10)
        assert u["intervals"]["mms"] == e0.intervals["mms"]
    # Not vacuous: the controls moved something.
    assert any(l.null[-1]["mean"] != l.mms[-1] for l in r.layers)
    assert any(l.intervals["mms"][-1]["lo"] < l.intervals["mms"][-1]["hi"] for l in r.layers)


def test_bootstrap_and_simple_bad_input_leave_models_unchanged():
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    snap = Snapshot(a, b)
    calls = []
    h = a.register_forward_pre_hook(lambda m, i: calls.append(1))
    with pytest.raises(ValueError, match=r"bootstrap: 10 chunks but only 4 batches; .*use chunks=4 or less"):
        smt.compare(a, b, loader(n=50, batch=16), bootstrap=20, chunks=10, progress=False)
    with pytest.raises(ValueError, match=r"bootstrap: the data has no len\(\)"):
        smt.compare(a, b, (x for x in loader()), bootstrap=20, chunks=2, progress=False)
    with pytest.raises(ValueError, match=r"simple: 1.5; .*\[0, 1\]"):
        smt.compare(a, b, loader(), simple=1.5, progress=False)
    with pytest.raises(ValueError, match="null: 'shuffle'"):
        smt.compare(a, b, loader(), null="shuffle", progress=False)
    with pytest.raises(ValueError, match="top_inputs: -1"):
        smt.compare(a, b, loader(), top_inputs=-1, progress=False)
    with pytest.raises(ValueError, match="eps"):
        smt.compare(a, b, loader(), eps=(0.2, 1.5), progress=False)
    with pytest.raises(ValueError, match="measures|measure"):
        smt.compare(a, b, loader(), measures=("cka", "nope"), progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nul'"):
        smt.compare(a, b, loader(), nul="rotate", progress=False)
    with pytest.raises(TypeError, match="layers are a keyword argument"):
        smt.compare(a, b, loader(), ["features.1"], progress=False)
    with pytest.raises(ValueError, match="pool: 'median'"):
        smt.compare(a, b, loader(), pool="median", progress=False)
    assert calls == []  # nothing ran
    h.remove()
    snap.check()
    assert no_hooks(a, b)


# ------------------------------------------------------------------------------------------
# Errors that point at the cause, models as they were
# ------------------------------------------------------------------------------------------


class NanReLU(nn.ReLU):
    """A ReLU that writes one non-finite value at a given batch (call) and place."""

    def __init__(self, call: int, at, value: float = float("nan")) -> None:
        super().__init__()
        self.call, self.at, self.value, self.n = call, at, value, 0

    def forward(self, x):
        y = super().forward(x)
        self.n += 1
        if self.n == self.call + 1:
            y = y.clone()
            y[self.at] = self.value
        return y


@pytest.mark.parametrize("native", [True, False], ids=["engine", "torch"])
def test_nan_names_model_layer_batch_and_input(native, monkeypatch):
    """The engine's accumulator and the torch products (what a GPU runs) both stop at the
    NaN; the message locates it in the module's output."""
    from spanmatch.torch import _accumulate

    monkeypatch.setattr(_accumulate, "NATIVE_CPU", native)
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    b.features[1] = NanReLU(call=1, at=(3, 4, 2, 1))  # batch 1, input 3 of the batch, channel 4, position (2, 1)
    a.train()
    snap = Snapshot(a, b)
    with pytest.raises(
        ValueError,
        match=r"non-finite value nan in the output of module 'features\.1' \(NanReLU\) of model b: batch 1, "
        r"input 13 of the data \(input 3 of the batch\), position \[2, 1\], neuron 4",
    ):
        smt.compare(a, b, loader(n=30, batch=10), progress=False)
    snap.check()
    assert no_hooks(a, b)

    # In the baseline models: named as such; an infinity in a dense layer (no position).
    a0, b0 = fresh(SmallCNN, 5), fresh(SmallCNN, 6)
    a0.act = type("InfGELU", (nn.GELU,), {})()
    a0.act.register_forward_hook(lambda m, i, o: o.index_put_((torch.tensor([7]), torch.tensor([2])), torch.tensor(float("inf"))) if o.shape[0] > 7 else None)
    b.features[1].call = 99
    with pytest.raises(
        ValueError,
        match=r"non-finite value inf in the output of module 'act' \(InfGELU\) of model baseline a: batch 0, "
        r"input 7 of the data \(input 7 of the batch\), neuron 2",
    ):
        smt.compare(a, b, loader(n=30, batch=10), baseline=(a0, b0), progress=False)
    assert no_hooks(a, b, b0)
    assert len(a0.act._forward_hooks) == 1  # the user's own hook stays


def test_nan_in_tokens_names_the_token_and_padding_is_not_looked_at():
    torch.manual_seed(0)
    a, b = TokenNet(), TokenNet()

    class Poison(nn.Module):
        def __init__(self, at):
            super().__init__()
            self.at, self.n = at, 0

        def forward(self, x):
            x = torch.tanh(x).clone()
            if self.n == 0:  # the first batch
                x[self.at] = float("nan")
            self.n += 1
            return x

    seqs = random_seqs(6, 30, 3, 8, seed=1)
    batches = token_batches(seqs, 3)
    lengths = [len(s) for s in seqs]
    # Padding of input 1 (batch 0): left out, no error.
    short = int(np.argmin(lengths[:3]))
    assert lengths[short] < batches[0]["input_ids"].shape[1]
    b.act = Poison((short, batches[0]["input_ids"].shape[1] - 1, 5))
    r = smt.compare(a, b, batches, layers=["act"], progress=False)
    assert r["act"].rows == sum(lengths)
    # A real token: named by its position.
    b.act = Poison((1, 2, 5))
    with pytest.raises(ValueError, match=r"model b: batch 0, input 1 of the data \(input 1 of the batch\), token 2, neuron 5"):
        smt.compare(a, b, batches, layers=["act"], progress=False)
    assert no_hooks(a, b)


def test_models_restored_after_errors_mid_pass_and_after_success():
    """Success with every control, an exception from the data, Ctrl-C, an error inside a
    forward pass: parameters and buffers bitwise equal, modes, requires_grad and hooks as
    they were."""
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    a.train()
    a.features[3].eval()
    b.fc.weight.requires_grad_(False)
    user_hook = b.act.register_forward_hook(lambda m, i, o: None)
    snap = Snapshot(a, b)
    smt.compare(
        a, b, loader(n=40, batch=10), baseline="reinit", null="rotate", null_draws=3, bootstrap=10,
        chunks=2, top_inputs=3, cross=True, pool="mean", progress=False,
    )
    snap.check()

    def failing(exc):
        yield torch.randn(4, 3, 8, 8)
        yield torch.randn(4, 3, 8, 8)
        raise exc

    for exc in (RuntimeError("disk on fire"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            smt.compare(a, b, failing(exc), baseline="reinit", top_inputs=2, progress=False)
        snap.check()

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.n = 0

        def forward(self, x):
            self.n += 1
            if self.n == 3:
                raise RuntimeError("boom")
            return x

    boom = Boom()
    a.fc = nn.Sequential(a.fc, boom)
    snap = Snapshot(a, b)
    with pytest.raises(RuntimeError, match="boom"):
        smt.compare(a, b, loader(n=50, batch=10), layers=["features.1", "act"], baseline="reinit", bootstrap=5, chunks=5, progress=False)
    snap.check()
    user_hook.remove()
    assert no_hooks(a, b)
