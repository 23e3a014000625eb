"""Language-model pruning costs: SparseGPT on single Linear layers, Wanda's scoring against one
calibration forward pass.

1. SparseGPT: the whole `prune(layer, "sparsegpt", ...)` of nn.Linear(768, 3072) and of
   nn.Linear(3072, 768) (include_classifier=True: the layer is the model) at 50% (layerwise) and
   at 2:4, on 128 calibration sequences of --seq-len tokens (128 by default; the paper's 2048 would
   take 16x longer in the Hessian on CPU) in batches of 8. Beside it, in the same run: one plain
   forward pass of the layer over the calibration data, and the X^T X product alone (the part that
   grows with the tokens). Also the reconstruction error ||W X - W' X||^2 of SparseGPT, Wanda and
   magnitude pruning at the same sparsity (each with its own allocation at 50%: layerwise,
   per row, layerwise; all three with 2:4).
2. Wanda: `wanda_score` on a transformer-like MLP stack (--blocks blocks of LayerNorm ->
   Linear(d, 4d) -> GELU -> Linear(4d, d) + residual, d = --width, 768 by default: the MLP of
   GPT-2 small, whose two layers part 1 prunes alone) over the same calibration
   shape, against one plain no-grad forward pass over those batches, interleaved over repeats;
   the ratio is the median of the rounds' ratios (each against the forward pass of its own
   round); the target is a ratio <= 1.10.

Run: python benchmarks/bench_llm_prune.py [--threads 2] [--seq-len 128] [--repeats 5]
                                          [--width 768] [--blocks 2] [--skip-sparsegpt]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from shrinkbench.pruning import ScoreContext, nm_compression, prune
from shrinkbench.pruning.llm import wanda_score

SEQUENCES = 128
BATCH = 8
TARGET_RATIO = 1.10


def calibration(width: int, seq_len: int, seed: int = 0) -> list[tuple[torch.Tensor, None]]:
    """128 sequences of `seq_len` tokens of `width` correlated features, in batches of 8."""
    gen = torch.Generator().manual_seed(seed)
    factors = torch.randn(16, width, generator=gen)
    scale = torch.linspace(0.2, 2.0, width)
    batches = []
    for _ in range(SEQUENCES // BATCH):
        x = torch.randn(BATCH, seq_len, width, generator=gen) * scale
        x += torch.randn(BATCH, seq_len, 16, generator=gen) @ factors
        batches.append((x, None))
    return batches


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_pass(model: nn.Module, batches: list) -> None:
    """One plain calibration pass: what any calibrated method must at least run."""
    with torch.no_grad():
        for x, _ in batches:
            model(x)


def gram(width: int, batches: list) -> None:
    """X^T X over all calibration tokens: SparseGPT's Hessian, alone."""
    xtx = torch.zeros(width, width)
    for x, _ in batches:
        flat = x.reshape(-1, width)
        xtx.addmm_(flat.T, flat)


def recon_error(dense: torch.Tensor, pruned: torch.Tensor, batches: list) -> float:
    """||W X - W' X||^2 over the calibration tokens."""
    diff = dense - pruned
    return sum(float((x.reshape(-1, dense.shape[1]) @ diff.T).square().sum()) for x, _ in batches)


def bench_sparsegpt(seq_len: int, repeats: int) -> None:
    """Time prune(..., "sparsegpt") on each layer shape, and compare the reconstruction errors."""
    print(f"SparseGPT, 128 sequences x {seq_len} tokens ({SEQUENCES * seq_len} tokens), "
          f"blocksize 128, percdamp 0.01")
    for fan_in, fan_out in ((768, 3072), (3072, 768)):
        torch.manual_seed(0)
        layer = nn.Linear(fan_in, fan_out)
        batches = calibration(fan_in, seq_len)
        dense = layer.weight.detach().clone()
        t_forward = min(seconds(lambda: forward_pass(layer, batches)) for _ in range(3))
        t_gram = min(seconds(lambda: gram(fan_in, batches)) for _ in range(3))
        for allocation in (None, "2:4"):
            total = sum(p.numel() for p in layer.parameters())
            compression = (total / (total - dense.numel() // 2) if allocation is None
                           else nm_compression(layer, "2:4", include_classifier=True))
            errors, times = {}, []
            for strategy in ("sparsegpt",) * repeats + ("wanda", "layer_magnitude"):
                model = copy.deepcopy(layer)
                took = seconds(lambda: prune(model, strategy, compression, batches=batches,
                                             include_classifier=True, allocation=allocation))
                if strategy == "sparsegpt":
                    times.append(took)
                errors[strategy] = recon_error(dense, model.weight.detach(), batches)
            label = "50% layerwise" if allocation is None else "2:4"
            ratio = {k: errors[k] / errors["layer_magnitude"] for k in ("sparsegpt", "wanda")}
            print(f"  Linear({fan_in}, {fan_out}) {label}: prune() {statistics.median(times):.2f} s"
                  f" (median of {[round(t, 2) for t in times]}) (X^T X alone {t_gram:.2f} s; "
                  f"one forward pass {t_forward:.2f} s; best of 3); error vs magnitude: "
                  f"sparsegpt {ratio['sparsegpt']:.3f}, wanda {ratio['wanda']:.3f}")


class Block(nn.Module):
    """LayerNorm -> Linear(d, 4d) -> GELU -> Linear(4d, d), plus the residual."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


def bench_wanda(width: int, blocks: int, seq_len: int, repeats: int) -> None:
    """wanda_score against a plain forward pass, interleaved: medians and the paired ratio."""
    torch.manual_seed(0)
    model = nn.Sequential(*[Block(width) for _ in range(blocks)]).eval()
    batches = calibration(width, seq_len, seed=1)
    params = {n: p for n, p in model.named_parameters()
              if n.endswith(("up.weight", "down.weight"))}
    ctx = ScoreContext(model, "wanda", batches)
    forward_pass(model, batches)  # warm-up
    plain, scoring = [], []
    for _ in range(repeats):
        plain.append(seconds(lambda: forward_pass(model, batches)))
        scoring.append(seconds(lambda: wanda_score(params, ctx)))
    p, s = statistics.median(plain), statistics.median(scoring)
    ratio = statistics.median(b / a for a, b in zip(plain, scoring))  # paired: same round's load
    scored = sum(q.numel() for q in params.values())
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"Wanda scoring, {blocks} blocks of width {width} ({scored:,} scored weights), "
          f"128 sequences x {seq_len} tokens: {s:.3f} s vs one forward pass {p:.3f} s (medians): "
          f"ratio {ratio:.3f} (target <= {TARGET_RATIO}: {verdict}); "
          f"runs: scoring {[round(v, 3) for v in scoring]}, forward {[round(v, 3) for v in plain]}")


def main() -> None:
    """Parse the options, set the threads, run both parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--skip-sparsegpt", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_sparsegpt:
        bench_sparsegpt(args.seq_len, max(1, min(args.repeats, 3)))
    bench_wanda(args.width, args.blocks, args.seq_len, args.repeats)


if __name__ == "__main__":
    main()
