"""Loading speed: shrinkbench's in-memory loader against torch's DataLoader(TensorDataset), one run.

CPU section: one training epoch of LeNet-300-100 on MNIST (batch 128, SGD), the same loop fed by
(a) shrinkbench.data's TensorLoader (uint8 in memory, normalized per batch), (b) the same loader
storing pre-normalized float32, and (c) DataLoader(TensorDataset(x_float, y), shuffle=True).
Target: (a) at most 0.5x the time of (c). Real MNIST from $SHRINKBENCH_TEST_MNIST/mnist when set,
else synthetic MNIST-shaped data (the output says which).

GPU section (only with CUDA): training images/s of a ResNet-56 on CIFAR-shaped synthetic data with
crop+flip augmentation, fp32 and bf16 autocast + channels-last, data on the GPU vs a plain
DataLoader loop copying each batch from the CPU.

    python benchmarks/bench_loading.py [--repeats 3] [--gpu-steps 200]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import time
from typing import Iterable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from shrinkbench.data import TensorLoader, get_data
from shrinkbench.data.loader import normalizer

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def lenet_300_100() -> nn.Module:
    """LeNet-300-100: 784-300-100-10 with ReLU."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100),
                         nn.ReLU(), nn.Linear(100, 10))


def mnist_uint8() -> tuple[torch.Tensor, torch.Tensor, str]:
    """60,000 uint8 MNIST training images (real if available) and their labels."""
    root = os.environ.get("SHRINKBENCH_TEST_MNIST")
    if root:
        bundle = get_data("mnist", data_dir=root, val_size=0, augment=False)
        return bundle.train.x, bundle.train.y, f"real MNIST from {root}/mnist"
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60000, 1, 28, 28), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (60000,), generator=gen)
    return x, y, "synthetic MNIST-shaped data (SHRINKBENCH_TEST_MNIST unset)"


def train_epoch(model: nn.Module, batches: Iterable, device: str = "cpu") -> float:
    """Seconds for one SGD pass over `batches`."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def data_only(batches: Iterable) -> float:
    """Seconds to draw every batch without a model."""
    start = time.perf_counter()
    for _x, _y in batches:
        pass
    return time.perf_counter() - start


def cpu_section(repeats: int) -> None:
    x8, y, source = mnist_uint8()
    scale, shift = normalizer(MNIST_MEAN, MNIST_STD, 255.0, torch.device("cpu"))
    xf = x8 * scale + shift
    loaders = {
        "shrinkbench TensorLoader (uint8)": lambda: TensorLoader(
            x8, y, batch_size=128, shuffle=True, scale=scale, shift=shift),
        "shrinkbench TensorLoader (float32)": lambda: TensorLoader(
            xf, y, batch_size=128, shuffle=True),
        "DataLoader(TensorDataset)": lambda: DataLoader(
            TensorDataset(xf, y), batch_size=128, shuffle=True,
            generator=torch.Generator().manual_seed(0)),
    }
    base_model = lenet_300_100()
    best = {name: (float("inf"), float("inf")) for name in loaders}
    for _ in range(repeats):  # interleaved, best of `repeats`, to be fair on a loaded machine
        for name, make in loaders.items():
            t_train = train_epoch(copy.deepcopy(base_model), make())
            t_data = data_only(make())
            best[name] = (min(best[name][0], t_train), min(best[name][1], t_data))
    baseline = best["DataLoader(TensorDataset)"]
    print(f"CPU: one epoch of LeNet-300-100, batch 128, {len(y)} images, {source}; "
          f"torch threads {torch.get_num_threads()}, best of {repeats}")
    print(f"  {'loader':36s} {'epoch s':>8s} {'ratio':>6s} {'data-only s':>12s} {'ratio':>6s}")
    for name, (t_train, t_data) in best.items():
        print(f"  {name:36s} {t_train:8.3f} {t_train / baseline[0]:6.2f} {t_data:12.3f} "
              f"{t_data / baseline[1]:6.2f}")
    ratio = best["shrinkbench TensorLoader (uint8)"][0] / baseline[0]
    print(f"  target: epoch ratio <= 0.50 -> {'met' if ratio <= 0.5 else 'NOT met'} ({ratio:.2f})")


def resnet56() -> tuple[nn.Module, str]:
    """The zoo's resnet56 when shrinkbench.models provides it, else a small inline equivalent."""
    try:
        from shrinkbench.models import create

        return create("resnet56", num_classes=10), "shrinkbench.models resnet56"
    except Exception:  # the zoo is optional here: fall back to the inline definition
        pass

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.short = nn.Sequential()
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                           nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.short(x))

    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(9):
            layers.append(Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers), "inline ResNet-56"


def forever(loader: Iterable) -> Iterable:
    """Batches of `loader`, epoch after epoch."""
    while True:
        yield from loader


def images_per_second(model: nn.Module, batches: Iterable, steps: int, bf16: bool) -> float:
    """Training throughput over `steps` batches after 10 warm-up steps."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    seen, start = 0, 0.0
    for i, (x, y) in enumerate(itertools.islice(batches, steps + 10)):
        if i == 10:
            torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        x = x.to("cuda", non_blocking=True).contiguous(memory_format=fmt)
        y = y.to("cuda", non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def gpu_section(steps: int) -> None:
    if not torch.cuda.is_available():
        print("GPU: skipped (CUDA is not available)")
        return
    kw = dict(shape=(3, 32, 32), num_train=50000, num_test=100, val_size=0, batch_size=128,
              augmentation="crop_flip")
    ours = get_data("synthetic", device="cuda", **kw).train
    cpu = get_data("synthetic", device="cpu", augment=False, **kw).train
    plain = DataLoader(TensorDataset(cpu.x, cpu.y), batch_size=128, shuffle=True, pin_memory=True,
                       drop_last=True)
    model, which = resnet56()
    print(f"GPU: {torch.cuda.get_device_name()}, {which}, CIFAR-shaped synthetic data, batch 128, "
          f"{steps} steps")
    for bf16 in (False, True):
        mode = "bf16 autocast + channels-last" if bf16 else "fp32"
        ips_ours = images_per_second(copy.deepcopy(model).cuda(), forever(ours), steps, bf16)
        ips_plain = images_per_second(copy.deepcopy(model).cuda(), forever(plain), steps,
                                      bf16)
        print(f"  {mode:31s} shrinkbench (on GPU, crop+flip) {ips_ours:9.0f} img/s   "
              f"DataLoader (CPU->GPU, no aug) {ips_plain:9.0f} img/s   ratio {ips_ours / ips_plain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu_section(args.repeats)
    gpu_section(args.gpu_steps)


if __name__ == "__main__":
    main()
