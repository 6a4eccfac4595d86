"""spanmatch.torch quick start: two small CNNs, a DataLoader, the table, one heatmap.

    pip install 'spanmatch[torch,plot]'
    python python/examples/torch_quickstart.py

Two models of the same architecture (random weights keep this example to a few seconds; B is
A with 20% noise added to every weight, a stand-in for a fine-tuned copy), compared on every
ReLU output and layer x layer, in one streamed pass over the data.
"""

import copy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed

import torch
from torch import nn

import spanmatch.torch


def small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


model_a = small_cnn(seed=0)
model_b = copy.deepcopy(model_a)
with torch.no_grad():
    for p in model_b.parameters():
        p.add_(0.2 * p.std() * torch.randn_like(p))
images = torch.randn(512, 3, 16, 16)  # your test set here
labels = torch.zeros(512, dtype=torch.long)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=64)

result = spanmatch.torch.compare(model_a, model_b, loader, cross=True, labels=("model A", "model B"))
print(result)  # mms at each ε and linear CKA, one row per ReLU

layer = result["3"]  # the second ReLU (module "3" of the Sequential)
print("A's neurons in the maximum match at ε = 0.25:", layer.match(0.25).a)
print("best layer of B for each layer of A (CKA):", result.cross.best_match("cka"))

out = Path(__file__).resolve().parents[2] / "docs" / "figures" / "torch_cross.png"
out.parent.mkdir(parents=True, exist_ok=True)
result.plot(kind="cross", eps=[0.25, 0.5], path=out)  # mms at two ε + linear CKA
print("heatmap:", out)
