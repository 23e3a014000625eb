"""evaluate_lm: mean NLL over scored tokens, perplexity and bits per token, against closed forms."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from shrinkbench.data import Vocab, WindowLoader
from shrinkbench.errors import ConfigError, DataError
from shrinkbench.metrics import evaluate_lm

V = 5


class Unigram(nn.Module):
    """The same next-token distribution at every position."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(probs.log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*x.shape, -1)


class Bigram(nn.Module):
    """Next-token logits from the current token only (a lookup table)."""

    def __init__(self, vocab: int, seed: int = 0) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)
        nn.init.normal_(self.table.weight, generator=torch.Generator().manual_seed(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x)


def windows(tokens: torch.Tensor, length: int, stride: int, batch_size: int = 4) -> WindowLoader:
    vocab = Vocab("char", "abcdefghijklmnopqrstuvwxyz"[:V - 1])  # V - 1 characters + <unk>
    return WindowLoader(tokens, vocab, length=length, stride=stride, batch_size=batch_size,
                        device=torch.device("cpu"), protocol={})


def sample_tokens(n: int, seed: int = 0) -> torch.Tensor:
    probs = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    return torch.multinomial(probs, n, replacement=True, generator=torch.Generator().manual_seed(seed))


def test_uniform_model_has_perplexity_vocab_size():
    result = evaluate_lm(Unigram(torch.full((V,), 1 / V)), windows(sample_tokens(300), 16, 8))
    assert result["tokens"] == 299
    assert result["loss"] == pytest.approx(math.log(V), rel=1e-6)
    assert result["ppl"] == pytest.approx(V, rel=1e-6)
    assert result["bpc"] == pytest.approx(math.log2(V), rel=1e-6)


def test_unigram_at_the_empirical_distribution_scores_its_entropy():
    tokens = sample_tokens(1000, seed=1)
    targets = tokens[1:]  # every token but the first is scored, exactly once
    freq = torch.bincount(targets, minlength=V).double() / len(targets)
    entropy = float(-(freq * freq.log()).sum())
    result = evaluate_lm(Unigram(freq.float()), windows(tokens, 32, 8, batch_size=5))
    assert result["tokens"] == 999
    assert result["loss"] == pytest.approx(entropy, rel=1e-5)
    assert result["ppl"] == pytest.approx(math.exp(entropy), rel=1e-5)
    assert result["bpc"] == pytest.approx(entropy / math.log(2), rel=1e-5)


@pytest.mark.parametrize("length,stride,batch_size", [(16, 8, 1), (16, 16, 7), (16, 1, 64),
                                                      (50, 13, 3), (1000, 500, 2)])
def test_windows_give_the_full_sequence_loss_for_a_bigram_model(length, stride, batch_size):
    """A bigram's prediction needs one token of context, so any window protocol that scores every
    target exactly once gives the loss of the whole sequence in one pass."""
    tokens = sample_tokens(257, seed=2)
    model = Bigram(V)
    with torch.no_grad():
        direct = nn.functional.cross_entropy(model(tokens[:-1]), tokens[1:]).item()
    result = evaluate_lm(model, windows(tokens, length, stride, batch_size))
    assert result["tokens"] == 256
    assert result["loss"] == pytest.approx(direct, rel=1e-6)


def test_ignored_targets_do_not_count():
    model = Bigram(V)
    x = torch.tensor([[0, 1, 2, 3], [4, 3, 2, 1]])
    y = torch.tensor([[1, 2, -100, 4], [-100, -100, 1, 0]])
    keep = y != -100
    with torch.no_grad():
        logp = model(x).log_softmax(-1)
    expected = -logp[keep].gather(1, y[keep].view(-1, 1)).mean().item()
    result = evaluate_lm(model, [(x[:1], y[:1]), (x[1:], y[1:])])
    assert result["tokens"] == 5 and result["loss"] == pytest.approx(expected, rel=1e-6)


def test_model_outputs_tuple_or_logits_attribute():
    tokens = sample_tokens(64)
    base = evaluate_lm(Bigram(V), windows(tokens, 8, 4))

    class TupleOut(Bigram):
        def forward(self, x):
            return super().forward(x), None

    class AttrOut(Bigram):
        def forward(self, x):
            return SimpleNamespace(logits=super().forward(x))

    assert evaluate_lm(TupleOut(V), windows(tokens, 8, 4)) == base
    assert evaluate_lm(AttrOut(V), windows(tokens, 8, 4)) == base


def test_autocast_runs_and_stays_close():
    tokens = sample_tokens(128)
    exact = evaluate_lm(Bigram(V), windows(tokens, 16, 8))
    low = evaluate_lm(Bigram(V), windows(tokens, 16, 8), autocast=torch.bfloat16)
    assert low["tokens"] == exact["tokens"] and low["loss"] == pytest.approx(exact["loss"], rel=2e-2)


def test_model_mode_is_restored_and_errors_are_clear():
    model = Bigram(V).train()
    evaluate_lm(model, windows(sample_tokens(40), 8, 4))
    assert model.training
    with pytest.raises(ConfigError, match=r"logits of shape \(1, 4, 5\) do not fit targets of shape "
                                          r"\(1, 3\)"):
        evaluate_lm(model, [(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))])
    with pytest.raises(DataError, match="no scored tokens"):
        evaluate_lm(model, [])
    with pytest.raises(DataError, match="no scored tokens"):
        evaluate_lm(model, [(torch.zeros(1, 3, dtype=torch.long), torch.full((1, 3), -100))])

    class Bad(nn.Module):
        def forward(self, x):
            return "text"

    with pytest.raises(ConfigError, match="returned str"):
        evaluate_lm(Bad(), [(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))])


def test_huge_loss_gives_infinite_perplexity():
    probs = torch.tensor([1.0, 1e-30, 1e-30, 1e-30, 1e-30])
    model = Unigram(probs)
    with torch.no_grad():
        model.logits.copy_(torch.tensor([0.0, -1000.0, -1000.0, -1000.0, -1000.0]))
    tokens = torch.tensor([0, 1, 1, 1, 1])
    result = evaluate_lm(model, windows(tokens, 4, 2))
    assert result["loss"] == pytest.approx(1000.0) and result["ppl"] == math.inf
