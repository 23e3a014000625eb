r"""Structured (channel) pruning: shrinkbench vs Torch-Pruning on ResNet-18/50 at the same channel ratio.

Both libraries prune the same randomly initialised model (shrinkbench's torchvision-layout ResNet,
3x224x224 input, 1000 classes; seed 0) layerwise by L1 filter magnitude to keep 1 - ratio of the
channels of every dependency group, the classifier's 1000 outputs kept:

  * Torch-Pruning: `BasePruner(model, x, MagnitudeImportance(p=1), pruning_ratio=ratio,
    global_pruning=False, ignored_layers=[fc])` then `step()`, as its README's ResNet-18 example
    (which prunes 1.822 G -> 0.487 G MACs, 11.69 M -> 3.06 M parameters at ratio 0.5);
  * shrinkbench: `prune(model, "layer_channel_l1", 1 / (1 - ratio), inputs=x, target="channels")`
    then `remove_channels(model, x)`.

For each model it prints, side by side for the dense model and the two slim ones: MACs by three
counters (shrinkbench's `count_macs`: conv/linear/matmul multiply-accumulates only;
Torch-Pruning's `count_ops_and_params`: the same plus linear bias, BatchNorm 2/element, pooling
1/input element and ReLU 1/element -- ReLU *modules* only, which shrinkbench's ResNet does not
have since it calls F.relu, so a row adds the F.relu output elements back, which gives TP's README
figures for torchvision's nn.ReLU ResNet-18 exactly; and `torch.utils.flop_counter.FlopCounterMode`
total // 2), parameters, time to prune (wall seconds including tracing / dependency graph;
shrinkbench's split into `prune` and `remove_channels`, the latter re-tracing the model and
checking its outputs), CPU latency at `--batch` (interleaved by `compare_latency`), the
out_channels of every conv in both slim models with how many of the kept channels the two
libraries chose alike, a sanity check that both slim models map a (1, 3, 224, 224) input to
(1, 1000), and a control: Torch-Pruning run with shrinkbench's channel score (producer filters'
L1, instead of TP's mean of L1 over every coupled slice: filters, BN scale, consumers' input
slices) must give the same slim model as shrinkbench, output difference 0.

Results on 2 cores (ratio 0.5): both libraries give identical widths (stem, residual streams and
the classifier's input halved; classifier outputs kept), so the same MACs and parameters by every
counter, and the same latency; they keep ~70-75% of the same channels (different scores) and
exactly the same ones under the control. Torch-Pruning prunes several times faster.

Torch-Pruning is NOT a dependency of shrinkbench; it lives in a separate environment:

    python3 -m venv /work/tp-env
    /work/tp-env/bin/pip install torch==2.13.0          # the CPU wheel, same torch as shrinkbench's
    /work/tp-env/bin/pip install torch-pruning          # needs torch and numpy only (no torchvision)
    /work/tp-env/bin/pip install -e .                   # this checkout (from the repository root)

Run (from the repository root):

    /work/tp-env/bin/python benchmarks/bench_torch_pruning.py \
        [--models resnet18 resnet50] [--ratio 0.5] [--threads 2] [--batch 16] \
        [--repeats 15] [--warmup 1] [--prune-repeats 3]

Cost: every latency round runs the dense model and both slim ones at batch 16; a ResNet-50 round
takes about 2 s on 2 quiet cores (dense 1.3 s), and up to several times that when other processes
share the cores. The defaults (1 warmup + 15 measured rounds per model, 3 prunes per library) finish
both models in about 1 minute on a quiet 2-core machine and stayed under 4 minutes on a busy one;
lower --repeats (or --batch) when short of time. Latency is noisy on a shared machine: the table
gives the median with its IQR and the minimum (the least disturbed pass); trust the comparison only
when the IQRs are small. Each library prunes a fresh copy --prune-repeats times (default 3,
alternating, after one untimed warm-up forward of the dense model) and the fastest run is
reported, each run including its library's tracing.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from importlib.metadata import version as _version
from dataclasses import dataclass, field

import torch
from torch import nn

try:
    import torch_pruning as tp
except ImportError:  # pragma: no cover - depends on the environment
    print(
        "bench_torch_pruning: torch_pruning is not importable in this interpreter "
        f"({sys.executable}).\nMake the benchmark's own environment (Torch-Pruning is not a "
        "shrinkbench dependency):\n"
        "    python3 -m venv /work/tp-env\n"
        "    /work/tp-env/bin/pip install torch==2.13.0\n"
        "    /work/tp-env/bin/pip install torch-pruning\n"
        "    /work/tp-env/bin/pip install -e .\n"
        "then run: /work/tp-env/bin/python benchmarks/bench_torch_pruning.py",
        file=sys.stderr,
    )
    sys.exit(2)

from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from shrinkbench.metrics import count_macs, count_parameters
from shrinkbench.metrics.latency import compare_latency
from shrinkbench.models import create
from shrinkbench.pruning import prune
from shrinkbench.pruning.masks import get_mask
from shrinkbench.pruning.structured import remove_channels

NAMES = ("dense", "tp", "sb")
LABEL = {"dense": "dense", "tp": "Torch-Pruning slim", "sb": "shrinkbench slim"}


@dataclass
class Counts:
    sb_macs: int  # shrinkbench count_macs(...).dense
    tp_ops: int  # torch_pruning.utils.count_ops_and_params MACs ("ops")
    fc_macs: int  # FlopCounterMode total // 2
    sb_params: int
    tp_params: int
    relu_elems: int  # elements out of F.relu / torch.relu calls (TP counts nn.ReLU modules only)


@dataclass
class Result:
    name: str
    counts: dict[str, Counts] = field(default_factory=dict)
    times: dict[str, dict[str, float]] = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    convs: list[tuple[str, int, int, int, int]] = field(default_factory=list)  # name, dense, tp, sb, same
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tp_vs_sb_max_diff: float = float("nan")
    same_score_max_diff: float = float("nan")  # TP with shrinkbench's score vs shrinkbench slim
    same_score_arch: bool = False
    sb_prune_report: str = ""


class _ReluElements(TorchFunctionMode):
    """Counts the output elements of functional ReLUs (nested calls are not seen twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_):
            self.n += out.numel()
        return out


def counts(model: nn.Module, x: torch.Tensor) -> Counts:
    model.eval()
    tp_ops, tp_params = tp.utils.count_ops_and_params(model, x)
    with torch.no_grad(), FlopCounterMode(display=False) as mode:
        model(x)
    with torch.no_grad(), _ReluElements() as relu:
        model(x)
    return Counts(count_macs(model, x).dense, int(tp_ops), mode.get_total_flops() // 2,
                  count_parameters(model).total, int(tp_params), relu.n)


def convs_of(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


class ProducerL1(tp.importance.Importance):
    """shrinkbench's channel_l1 score inside Torch-Pruning: per channel, the L1 norm of the filters
    that produce it (out-channel slices of the group's convs/linears), summed; no BN, no consumer
    (in-channel) weights, no mean over the group. Used only to check that, with the same score,
    both libraries remove exactly the same channels."""

    @torch.no_grad()
    def __call__(self, group):
        imp = None
        for i, (dep, idxs) in enumerate(group):
            if dep.pruning_fn in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                w = dep.layer.weight.data[idxs].flatten(1).abs().sum(1).double()
                if imp is None:
                    imp = torch.zeros(len(idxs), dtype=torch.float64)
                imp.scatter_add_(0, torch.tensor(group[i].root_idxs), w)
        return imp


def prune_tp(model: nn.Module, x: torch.Tensor, ratio: float, importance=None,
             ) -> tuple[dict[str, set[int]], dict[str, float]]:
    """Torch-Pruning in place; returns the out-channel indices it removed per conv and the times."""
    names = {m: n for n, m in model.named_modules()}
    t0 = time.perf_counter()
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    importance = importance or tp.importance.MagnitudeImportance(p=1)
    pruner = tp.pruner.BasePruner(model, x, importance=importance,
                                  pruning_ratio=ratio, global_pruning=False, ignored_layers=ignored)
    t1 = time.perf_counter()
    removed: dict[str, set[int]] = {}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            module = dep.target.module
            if isinstance(module, nn.Conv2d) and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                removed.setdefault(names[module], set()).update(int(i) for i in idxs)
        group.prune()
    t2 = time.perf_counter()
    return removed, {"graph": t1 - t0, "step": t2 - t1, "total": t2 - t0}


def prune_sb(model: nn.Module, x: torch.Tensor, ratio: float) -> tuple[nn.Module, dict[str, set[int]],
                                                                        dict[str, float], str]:
    """shrinkbench masks in place then builds the slim copy; removed out-channels per conv, times."""
    t0 = time.perf_counter()
    res = prune(model, "layer_channel_l1", 1.0 / (1.0 - ratio), inputs=x, target="channels")
    t1 = time.perf_counter()
    slim = remove_channels(model, x)
    t2 = time.perf_counter()
    removed = {}
    for name, conv in convs_of(model).items():
        mask = get_mask(conv, "weight")
        if mask is not None:
            alive = mask.reshape(mask.shape[0], -1).any(1)
            removed[name] = set((~alive).nonzero().flatten().tolist())
    return slim, removed, {"prune": t1 - t0, "remove": t2 - t1, "total": t2 - t0}, str(res)


def run_model(name: str, args: argparse.Namespace) -> Result:
    out = Result(name)
    torch.manual_seed(args.seed)
    dense = create(name).eval()
    x1 = torch.randn(1, 3, 224, 224)
    xb = torch.randn(args.batch, 3, 224, 224)
    with torch.no_grad():
        dense(x1)  # untimed warm-up of the kernels both libraries' tracing will hit
    out.counts["dense"] = counts(dense, x1)

    # each library prunes a fresh copy --prune-repeats times, alternating; the fastest run is kept
    for _ in range(args.prune_repeats):
        tp_try = copy.deepcopy(dense)
        tp_res = prune_tp(tp_try, x1, args.ratio)
        if "tp" not in out.times or tp_res[1]["total"] < out.times["tp"]["total"]:
            tp_model, (tp_removed, out.times["tp"]) = tp_try, tp_res
        sb_try = copy.deepcopy(dense)
        sb_res = prune_sb(sb_try, x1, args.ratio)
        if "sb" not in out.times or sb_res[2]["total"] < out.times["sb"]["total"]:
            sb_slim, sb_removed, out.times["sb"], out.sb_prune_report = sb_res
        del tp_try, sb_try
    tp_model.eval()
    sb_slim.eval()
    out.counts["tp"] = counts(tp_model, x1)
    out.counts["sb"] = counts(sb_slim, x1)

    dense_convs, tp_convs, sb_convs = convs_of(dense), convs_of(tp_model), convs_of(sb_slim)
    for conv_name, conv in dense_convs.items():
        n = conv.out_channels
        tp_kept = set(range(n)) - tp_removed.get(conv_name, set())
        sb_kept = set(range(n)) - sb_removed.get(conv_name, set())
        out.convs.append((conv_name, n, tp_convs[conv_name].out_channels,
                          sb_convs[conv_name].out_channels, len(tp_kept & sb_kept)))

    with torch.no_grad():
        y_tp, y_sb = tp_model(x1), sb_slim(x1)
    out.outputs = {"tp": tuple(y_tp.shape), "sb": tuple(y_sb.shape)}
    if y_tp.shape == y_sb.shape:
        out.tp_vs_sb_max_diff = float((y_tp - y_sb).abs().max())

    # control: Torch-Pruning with shrinkbench's score must remove exactly the same channels
    tp_same = copy.deepcopy(dense)
    prune_tp(tp_same, x1, args.ratio, importance=ProducerL1())
    tp_same.eval()
    out.same_score_arch = all(a.out_channels == b.out_channels and a.in_channels == b.in_channels
                              for a, b in zip(convs_of(tp_same).values(), sb_convs.values()))
    with torch.no_grad():
        y_same = tp_same(x1)
    if y_same.shape == y_sb.shape:
        out.same_score_max_diff = float((y_same - y_sb).abs().max())
    del tp_same

    models = {"dense": dense, "tp": tp_model, "sb": sb_slim}
    out.latency = compare_latency(models, xb, warmup=args.warmup, repeats=args.repeats,
                                  threads=args.threads)
    return out


def g(n: int) -> str:
    return f"{n / 1e9:.4f} G"


def m(n: int) -> str:
    return f"{n / 1e6:.4f} M"


def report(r: Result, args: argparse.Namespace) -> None:
    c = r.counts
    lat = r.latency
    print(f"\n## {r.name}, channel pruning ratio {args.ratio} (layerwise, L1), "
          f"latency at batch {args.batch}, {args.threads} threads\n")
    print("| metric | " + " | ".join(LABEL[k] for k in NAMES) + " |")
    print("|---|" + "---:|" * len(NAMES))
    rows = [
        ("MACs, shrinkbench count_macs (conv/linear)", lambda k: g(c[k].sb_macs)),
        ("MACs, TP count_ops_and_params (+BN, pool, bias, ReLU modules)", lambda k: g(c[k].tp_ops)),
        ("TP count + F.relu elements (TP's rule on nn.ReLU modules)",
         lambda k: f"{(c[k].tp_ops + c[k].relu_elems) / 1e9:.9f} G"),
        ("MACs, FlopCounterMode // 2", lambda k: g(c[k].fc_macs)),
        ("MACs left (count_macs)", lambda k: f"{c[k].sb_macs / c['dense'].sb_macs:.2%}"),
        ("params, shrinkbench count_parameters", lambda k: m(c[k].sb_params)),
        ("params, TP count_ops_and_params", lambda k: m(c[k].tp_params)),
        ("params left", lambda k: f"{c[k].sb_params / c['dense'].sb_params:.2%}"),
        ("time to prune, s", lambda k: "-" if k == "dense" else (
            f"{r.times['tp']['total']:.2f} (graph {r.times['tp']['graph']:.2f} + step "
            f"{r.times['tp']['step']:.2f})" if k == "tp" else
            f"{r.times['sb']['total']:.2f} (prune {r.times['sb']['prune']:.2f} + remove_channels "
            f"{r.times['sb']['remove']:.2f})")),
        (f"latency ms, batch {args.batch}: median (IQR)",
         lambda k: f"{lat[k].median_ms:.1f} ({lat[k].iqr_ms:.1f})"),
        (f"latency ms, batch {args.batch}: min", lambda k: f"{lat[k].min_ms:.1f}"),
        ("measured speedup vs dense (median / min)",
         lambda k: f"{lat['dense'].median_ms / lat[k].median_ms:.2f}x / "
                   f"{lat['dense'].min_ms / lat[k].min_ms:.2f}x"),
        ("throughput, images/s", lambda k: f"{lat[k].throughput:.1f}"),
        ("output shape on (1,3,224,224)",
         lambda k: "(1, 1000)" if k == "dense" else str(r.outputs[k])),
    ]
    for title, cell in rows:
        print(f"| {title} | " + " | ".join(cell(k) for k in NAMES) + " |")
    ok = all(s == (1, 1000) for s in r.outputs.values())
    print(f"\nsanity: both slim models give (1, 1000) outputs: {'yes' if ok else 'NO'}; "
          f"max |TP slim - shrinkbench slim| on one input: {r.tp_vs_sb_max_diff:.3g} "
          "(nonzero when the libraries keep different channels)")
    print("control: Torch-Pruning given shrinkbench's score (producer-filter L1, summed) -> same "
          f"architecture: {'yes' if r.same_score_arch else 'NO'}, max |output - shrinkbench slim|: "
          f"{r.same_score_max_diff:.3g} (0 = the same channels removed"
          + ("" if r.same_score_arch else "; widths differ by rounding: Torch-Pruning keeps "
             "int(n * (1 - ratio)) channels of a group of n, shrinkbench n - floor(n * ratio)") + ")")
    print(f"shrinkbench: {r.sb_prune_report}")
    same_arch = all(t == s for _, _, t, s, _ in r.convs)
    print(f"\nPer-conv out_channels ({'identical architectures' if same_arch else 'ARCHITECTURES DIFFER'}); "
          "'same kept' = channels both libraries kept, of the kept ones:\n")
    print("| conv | dense | TP | shrinkbench | same kept |")
    print("|---|---:|---:|---:|---:|")
    total_same = total_kept = 0
    for name, n, t, s, same in r.convs:
        flag = "" if t == s else " **differs**"
        print(f"| {name} | {n} | {t} | {s}{flag} | {same}/{min(t, s)} |")
        total_same += same
        total_kept += min(t, s)
    print(f"\nkept channels chosen alike, over all convs: {total_same}/{total_kept} "
          f"({total_same / max(total_kept, 1):.1%})")


def summary(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\n## Summary (ratio {args.ratio}; MACs by shrinkbench count_macs; latency batch {args.batch}, "
          f"{args.threads} threads, {args.repeats} repeats, median ms)\n")
    print("| model | dense MACs | TP MACs | SB MACs | dense params | TP params | SB params | "
          "TP prune s | SB prune s | dense ms | TP ms | SB ms |")
    print("|---|" + "---:|" * 11)
    for r in results:
        c, lat = r.counts, r.latency
        print(f"| {r.name} | {g(c['dense'].sb_macs)} | {g(c['tp'].sb_macs)} | {g(c['sb'].sb_macs)} | "
              f"{m(c['dense'].sb_params)} | {m(c['tp'].sb_params)} | {m(c['sb'].sb_params)} | "
              f"{r.times['tp']['total']:.2f} | {r.times['sb']['total']:.2f} | "
              f"{lat['dense'].median_ms:.0f} | {lat['tp'].median_ms:.0f} | {lat['sb'].median_ms:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--ratio", type=float, default=0.5,
                        help="channel pruning ratio (Torch-Pruning's pruning_ratio; shrinkbench's "
                             "channels target is 1 / (1 - ratio))")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15, help="measured latency rounds per model")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured latency rounds per model")
    parser.add_argument("--prune-repeats", type=int, default=3,
                        help="times each library prunes a fresh copy (the fastest is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0.0 < args.ratio < 1.0:
        parser.error("--ratio must be in (0, 1)")
    if args.prune_repeats < 1 or args.repeats < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("--prune-repeats, --repeats and --batch must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torch-pruning {_version('torch-pruning')}, "
          f"threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    results = []
    for name in args.models:
        r = run_model(name, args)
        report(r, args)
        results.append(r)
    summary(results, args)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
