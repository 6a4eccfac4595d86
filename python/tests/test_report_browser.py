"""The report renders (issue 19): two small CNNs trained here for a few hundred steps, compared
with top inputs, simple matches, the untrained baseline and the rotation null, reported with
``Result.report`` and loaded in headless Chromium: no console errors, every figure present,
neuron strips present for a simple match, a screenshot that is not blank.

Runs where Chromium is installed (``.ci/run`` installs it through scripts/setup.sh); skipped with
the reason elsewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import spanmatch

torch = pytest.importorskip("torch")
nn = torch.nn

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE_ERROR = re.compile(r"Uncaught|ERROR:CONSOLE|CONSOLE\(\d+\).*[Ee]rror|Failed to load resource")


def _browser() -> str:
    for b in BROWSERS:
        path = shutil.which(b)
        if path:
            return path
    pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")


def _data(n: int, seed: int):
    """16 x 16 grey images of 4 classes: a bright bar (horizontal, vertical, two diagonals) at a
    random offset, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 0.15 * torch.randn(n, 1, 16, 16, generator=g)
    off = torch.randint(2, 14, (n,), generator=g)
    idx = torch.arange(16)
    for i in range(n):
        o, c = int(off[i]), int(y[i])
        if c == 0:
            x[i, 0, o] += 1.0
        elif c == 1:
            x[i, 0, :, o] += 1.0
        elif c == 2:
            x[i, 0, idx, idx] += 1.0
        else:
            x[i, 0, idx, 15 - idx] += 1.0
    return x, y


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(12 * 4 * 4, 24)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(24, 4)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.relu1(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(self.relu2(self.conv2(x)), 2)
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


def _train(seed: int, x, y, steps: int = 300):
    torch.manual_seed(seed)
    net = Net()
    init = Net()
    init.load_state_dict(net.state_dict())
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), init.eval()


def _activations(net, x):
    """The post-ReLU activations of the three hidden layers."""
    out = {}
    hooks = [
        getattr(net, r).register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o.detach().numpy()))
        for name, r in (("conv1", "relu1"), ("conv2", "relu2"), ("fc1", "relu3"))
    ]
    with torch.no_grad():
        logits = net(x)
    for h in hooks:
        h.remove()
    return out, logits


def _run(browser: str, args, tmp: Path, name: str):
    profile = tmp / f"profile-{name}"
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_of_two_trained_cnns_renders_in_chromium(tmp_path):
    browser = _browser()
    torch.set_num_threads(1)
    xtr, ytr = _data(1024, 0)
    xte, yte = _data(400, 1)
    (a, a0), (b, b0) = _train(0, xtr, ytr), _train(1, xtr, ytr)
    acts_a, logits = _activations(a, xte)
    assert (logits.argmax(1) == yte).float().mean() > 0.6  # the nets learned something
    acts_b, _ = _activations(b, xte)
    base_a, _ = _activations(a0, xte)
    base_b, _ = _activations(b0, xte)
    result = spanmatch.compare(
        acts_a, acts_b, top_inputs=8, simple=0.5, baseline=(base_a, base_b), null="rotate", null_draws=5
    )
    assert all(l.verdict is not None for l in result)
    dataset = torch.utils.data.TensorDataset(xte, yte)
    page = result.report(tmp_path / "report", inputs=dataset)
    html = page.read_text()

    shot = tmp_path / "shot.png"
    run = _run(browser, ["--window-size=1400,3000", f"--screenshot={shot}", page.as_uri()], tmp_path, "shot")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = _run(browser, ["--dump-dom", page.as_uri()], tmp_path, "dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    errors = [l for l in (run.stderr + dom.stderr).splitlines() if CONSOLE_ERROR.search(l)]
    assert not errors, errors

    # Every figure of the page is in the rendered document, each with its drawing.
    rendered = dom.stdout
    figures = re.findall(r"<figure>(.*?)</figure>", rendered, flags=re.S)
    assert len(figures) == html.count("<figure>") == 3
    assert all("<svg" in f and "<figcaption>" in f for f in figures)
    # Neuron strips for at least one simple match: a simple group with image strips on both sides.
    groups = re.findall(r'<div class="vg simple">(.*?)</div></div>\n', rendered, flags=re.S)
    assert any(g.count('class="strip"') >= 2 and 'class="im i' in g for g in groups), "no strips of a simple match"
    # The thumbnails are declared (CSS data URIs) for every image a strip refers to.
    used = set(re.findall(r'class="im i(\d+)"', rendered))
    declared = set(re.findall(r"\.i(\d+)\{background-image:url\(\"data:image/png;base64,", rendered))
    assert used and used <= declared
    # The At-a-glance box with the verdicts.
    assert "At a glance" in rendered and "verdict: <b>" in rendered

    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (3000, 1400) and img.std() > 10  # not a blank page
