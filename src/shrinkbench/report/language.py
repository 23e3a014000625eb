"""The report's treatment of language models: perplexity instead of accuracy, one group per protocol.

A (data set, model) pair whose runs record perplexities and no accuracy (analysis.is_language_model)
gets, instead of the accuracy plots and tables, summary bullets (the lowest perplexity at each
compression) and a "Language models" section. Perplexities are compared only between runs whose
recorded `lm_protocol` strings are identical: each protocol is its own group, with its own protocol
table, figure and results table, and nothing is ever drawn or tabulated across two protocols.

Nothing here imports matplotlib until a figure is drawn.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..results import analysis
from ..results.names import display_name
from .document import Bullets, Document, Heading, Image, Table, Text
from .headline import winners
from .names import pair_title
from .tables import PM, fmt_number, fmt_p, fmt_pm, fmt_ratio

SPLIT_NAMES = {"val": "validation", "test": "test"}
SHORT_SPLIT = {"val": "Val", "test": "Test"}
INTRO = ("Runs on text data sets are language models, measured by perplexity instead of accuracy: "
         "perplexity = exp(mean negative log-likelihood per scored token, in nats) on a split, so lower "
         "is better (1 would be a perfect model); bpc is bits per token (the loss / ln 2; bits per "
         "character with the char tokenizer). A perplexity depends on the evaluation protocol as much "
         "as on the model (the split's file, the tokenizer and its vocabulary, the length and stride of "
         "the evaluation windows), so perplexities are compared only between runs whose recorded "
         "protocol (lm_protocol) is identical: each protocol is its own group below, with its own "
         "figure and tables.")
NOT_COMPARED = ("results under different protocols are not compared: a perplexity depends on the "
                "split, tokenizer, vocabulary and evaluation windows")


def language_pairs(runs: pd.DataFrame, pairs: list[tuple[str, str]],
                   of_pair: Callable[[pd.DataFrame, str, str], pd.DataFrame]) -> list[tuple[str, str]]:
    """The (data set, model) pairs of `pairs` whose runs are language-model runs."""
    return [pair for pair in pairs if analysis.is_language_model(of_pair(runs, *pair))]


# --- protocols ------------------------------------------------------------------------------------

def _split_docs(protocol: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {split: protocol[split] for split in analysis.LM_SPLITS if isinstance(protocol.get(split), dict)}


def _joined(values: list[Any]) -> str:
    distinct = list(dict.fromkeys(str(v) for v in values if v is not None))
    return "/".join(distinct) if distinct else "?"


def _base_title(protocol: dict[str, Any]) -> str:
    docs = list(_split_docs(protocol).values())
    length = _joined([d.get("eval_length") for d in docs])
    stride = _joined([d.get("eval_stride") for d in docs])
    vocab = str(protocol.get("vocab_hash") or "?")[:8]
    return f"eval length {length}, stride {stride}, {protocol.get('tokenizer', '?')} tokenizer, vocab {vocab}"


def _split_title(protocol: dict[str, Any], split: str) -> str:
    doc = protocol.get(split)
    if not isinstance(doc, dict):
        return f"no {SPLIT_NAMES[split]} split"
    return f"{split} {doc.get('file', '?')} md5 {str(doc.get('file_md5', '?'))[:8]}"


def protocol_titles(keys: list[str]) -> dict[str, str]:
    """A short title per protocol key, from its key facts ("eval length 128, stride 64, char
    tokenizer, vocab c9bb6d42"), with the split files added where two protocols share those facts,
    and a digest of the whole protocol where even those agree."""
    parsed = {key: analysis.parse_protocol(key) for key in keys}
    titles: dict[str, str] = {}
    for key in keys:
        if key == analysis.NO_PROTOCOL:
            titles[key] = "protocol not recorded"
        elif not parsed[key]:
            titles[key] = f"unreadable protocol {hashlib.md5(key.encode()).hexdigest()[:8]}"
        else:
            titles[key] = _base_title(parsed[key])
    for refine in (lambda k: ", ".join(_split_title(parsed[k], s) for s in analysis.LM_SPLITS),
                   lambda k: f"protocol {hashlib.md5(k.encode()).hexdigest()[:8]}"):
        counts = pd.Series(list(titles.values())).value_counts()
        for key in keys:
            if counts[titles[key]] > 1 and parsed[key]:
                titles[key] = f"{titles[key]}, {refine(key)}"
    return titles


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) and np.isfinite(value) else ""


def _calibration_text(group: pd.DataFrame) -> str:
    calibration = analysis.lm_calibration(group)
    sequences, length, seeds = calibration["sequences"], calibration["length"], calibration["seed"]
    if not (sequences or length or seeds):
        return "not recorded"
    text = f"{_joined(list(sequences))} sequences \u00d7 {_joined(list(length))} tokens"
    if seeds:
        text += f", seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"
    return text


PROTOCOL_HEADERS = ["Data set", "Tokenizer", "Vocabulary", "Split", "Tokens scored", "Eval length",
                    "Stride", "Windows", "Calibration"]


def protocol_table(key: str, group: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated split of a protocol: data set, tokenizer, vocabulary size and hash, split
    file and md5, tokens scored (of the split's tokens), window length, stride and count, and the
    calibration set of the pruning (sequences x length, seeds) of the group's pruned runs."""
    protocol = analysis.parse_protocol(key)
    calibration = _calibration_text(group)
    rows = []
    for split, doc in _split_docs(protocol).items():
        scored, tokens = doc.get("tokens_scored"), doc.get("tokens")
        rows.append(dict(zip(PROTOCOL_HEADERS, (
            protocol.get("dataset", ""), protocol.get("tokenizer", ""),
            f"{protocol.get('vocab_size', '?')} tokens, hash {protocol.get('vocab_hash', '?')}",
            f"{SPLIT_NAMES[split]}: {doc.get('file', '?')} (md5 {str(doc.get('file_md5', '?'))[:8]})",
            f"{_count(scored)} of {_count(tokens)}" if _count(tokens) else _count(scored),
            doc.get("eval_length", ""), doc.get("eval_stride", ""), _count(doc.get("windows")), calibration))))
    return pd.DataFrame(rows, columns=PROTOCOL_HEADERS)


# --- results table --------------------------------------------------------------------------------

def _signed(mean: Any, std: Any, digits: int = 2) -> str:
    try:
        m = float(mean)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(m):
        return ""
    text = f"{m:+.{digits}f}"
    s = fmt_number(std, digits)
    return f"{text} {PM} {s}" if s else text


def primary_split(runs: pd.DataFrame) -> str | None:
    """The split the summary ranks by: validation when the runs have it, else test."""
    splits = analysis.lm_splits(runs)
    return splits[0] if splits else None


def results_table(group: pd.DataFrame, finetuned: bool | None = None) -> pd.DataFrame:
    """Per strategy and compression (one protocol): seeds, mean ± std over seeds of the validation
    perplexity (before and after fine-tuning, when the runs were fine-tuned), the test perplexity and
    bits per token, the change in perplexity from the dense model (same seed and protocol), the
    compression ratio and the theoretical speedup; the dense model in the first row."""
    finetuned = analysis.lm_finetuned(group) if finetuned is None else finetuned
    splits = analysis.lm_splits(group)
    if not splits:
        return pd.DataFrame()
    main = splits[0]
    bpc_split = "test" if "test" in splits else main
    after = " after FT" if finetuned else ""
    spec: list[tuple[str, str, str]] = []  # column, header, kind
    if finetuned:
        spec.append((f"pre_{main}_ppl", f"{SHORT_SPLIT[main]} ppl before FT", "ppl"))
    spec += [(f"post_{split}_ppl", f"{SHORT_SPLIT[split]} ppl{after}", "ppl") for split in splits]
    spec.append((f"post_{bpc_split}_bpc", f"{SHORT_SPLIT[bpc_split]} bpc{after}", "bpc"))
    spec.append(("_delta", f"\u0394 {SHORT_SPLIT[main].lower()} ppl vs dense", "delta"))
    spec += [("compression_ratio", "Compression ratio", "ratio"), ("speedup", "Speedup", "ratio")]
    data = group.assign(_delta=analysis.lm_change(group, main))
    metrics = [c for c, _, _ in spec if c in data.columns]
    agg = analysis.aggregate(data, metrics=metrics, by=("strategy", "compression"))
    order = sorted(range(len(agg)), key=lambda i: (not np.isclose(agg["compression"].iloc[i], 1.0),
                                                   analysis.strategy_sort_key(agg["strategy"].iloc[i]),
                                                   agg["compression"].iloc[i]))
    agg = agg.iloc[order]
    rows = [_dense_row(group, spec, splits, bpc_split)]
    counted = [c for c in (f"post_{main}_ppl",) if c in metrics]
    for _, r in agg.iterrows():
        row: dict[str, str | int] = {
            "Strategy": display_name(r["strategy"]), "Compression": fmt_ratio(r["compression"]),
            # the seeds behind the ranked perplexity (a run without it is not counted)
            "Seeds": int(min(r[f"{m}_n"] for m in counted)) if counted else 0}
        for column, header, kind in spec:
            if column not in metrics:
                continue
            mean, std = r[f"{column}_mean"], r[f"{column}_std"]
            row[header] = (_signed(mean, std) if kind == "delta"
                           else fmt_pm(mean, std, 3 if kind == "bpc" else 2))
        rows.append(row)
    return pd.DataFrame(rows)


def _dense_row(group: pd.DataFrame, spec: list[tuple[str, str, str]], splits: list[str],
               bpc_split: str) -> dict[str, Any]:
    """The dense model's row: its perplexities and bits per token (mean ± std over seeds)."""
    row: dict[str, Any] = {"Strategy": "Dense model", "Compression": "1"}
    seeds = 0
    for column, header, kind in spec:
        if kind == "ratio":
            row[header] = "1.00"
            continue
        if kind == "delta" or column.startswith("pre_"):
            row[header] = ""
            continue
        split = column.split("_")[1]
        dense = f"dense_{split}_{kind}"
        if dense not in group.columns:
            row[header] = ""
            continue
        values = pd.to_numeric(group[dense], errors="coerce")
        per_seed = values[values.notna()].groupby(group["seed"][values.notna()]).mean()
        seeds = max(seeds, len(per_seed))
        row[header] = fmt_pm(per_seed.mean(), per_seed.std(ddof=1), 3 if kind == "bpc" else 2)
    row["Seeds"] = seeds
    return {k: row.get(k, "") for k in ["Strategy", "Compression", "Seeds", *(h for _, h, _ in spec)]}


# --- summary --------------------------------------------------------------------------------------

def findings(group: pd.DataFrame) -> list[str]:
    """Plain sentences for one protocol group: the strategy with the lowest mean perplexity at each
    compression against the dense model, whether the runner-up is distinguishable (paired by seed,
    Holm's correction over the group's tests), the unpruned control, and runs without a perplexity."""
    split = primary_split(group)
    if split is None:
        return ["No run has a perplexity after pruning."]
    metric = f"post_{split}_ppl"
    finetuned = analysis.lm_finetuned(group)
    comparisons = analysis.compare_per_compression(group, metric=metric)
    table = winners(group, comparisons, metric=metric, lower=True)
    dense, _ = analysis.lm_dense(group, split)
    dense_text = f" (dense {fmt_number(dense, 2)})" if np.isfinite(dense) else ""
    stage = " after fine-tuning" if finetuned else " (one-shot, no fine-tuning)"
    name = SPLIT_NAMES[split]
    if table.empty:
        out = [f"No pruned run has a {name} perplexity to compare."]
    else:
        out = []
        for _, r in table.iterrows():
            text = (f"Lowest {name} perplexity{stage} at {fmt_ratio(r['compression'])}\u00d7: "
                    f"{display_name(r['best'])} {fmt_number(r['best_mean'], 2)}{dense_text}")
            if r["next"] is None:
                text += "; the only strategy run there"
            else:
                text += f"; runner-up {display_name(r['next'])} {fmt_number(r['next_mean'], 2)}"
                if np.isfinite(r["p_holm"]):
                    verdict = "significantly higher" if r["significant"] else "not distinguishable"
                    p = fmt_p(r["p_holm"]).replace("<", "< ")
                    text += f", {verdict} (Holm p {p if p.startswith('<') else '= ' + p})"
                else:
                    text += " (not tested: fewer than 2 seeds shared)"
            out.append(text + ".")
        tested = int(comparisons["p_holm"].notna().sum()) if len(comparisons) else 0
        if tested:
            out.append(f"Lower perplexity is better; means over seeds; tests are paired t-tests over "
                       f"seeds at each compression with Holm's correction over the {tested} "
                       f"test{'s' if tested != 1 else ''} of these runs.")
    values = pd.to_numeric(group.get(metric), errors="coerce")
    missing = group[~np.isfinite(values.to_numpy(dtype=float))] if values is not None else group
    if len(missing):
        where = ", ".join(f"{display_name(s)} {fmt_ratio(c)}\u00d7 seed {seed}" for s, c, seed in
                          missing[["strategy", "compression", "seed"]].itertuples(index=False, name=None))
        out.append(f"{len(missing)} done run{'s have' if len(missing) > 1 else ' has'} no finite {name} "
                   f"perplexity and {'are' if len(missing) > 1 else 'is'} left out: {where}.")
    controls = group[np.isclose(pd.to_numeric(group["compression"], errors="coerce"), 1.0)]
    control = pd.to_numeric(controls.get(metric), errors="coerce")
    control = control[np.isfinite(control)] if control is not None else pd.Series(dtype=float)
    if finetuned and len(control):
        out.append(f"Reference: the unpruned control (compression 1, fine-tuned with the same recipe) "
                   f"reaches {name} perplexity {fmt_number(control.mean(), 2)} over {len(control)} "
                   f"seed{'s' if len(control) != 1 else ''}.")
    return out


def summary(doc: Document, pair: pd.DataFrame, name: str) -> None:
    """The summary of one language-model pair: per protocol group, its findings."""
    groups = analysis.protocol_groups(pair)
    titles = protocol_titles([key for key, _ in groups])
    doc.add(Heading(name, level=3))
    if len(groups) > 1:
        doc.add(Text(f"Language model, evaluated under {len(groups)} different protocols; "
                     f"{NOT_COMPARED} (see Language models)."))
        for key, group in groups:
            doc.add(Text(f"Protocol {titles[key]}:"), Bullets(tuple(findings(group))))
        return
    key, group = groups[0]
    doc.add(Bullets((f"Language model, evaluated under one protocol ({titles[key]}); see Language models.",
                     *findings(group))))


# --- the section ----------------------------------------------------------------------------------

def section(doc: Document, runs: pd.DataFrame, pairs: list[tuple[str, str]],
            of_pair: Callable[[pd.DataFrame, str, str], pd.DataFrame], layers: pd.DataFrame) -> None:
    """The Language models section: per (data set, model) and per protocol, the protocol, the
    perplexity figure and the results table; then the pair's per-layer densities."""
    from .language_plots import perplexity_figure  # matplotlib
    from .plots import layer_density_figure
    from .style import legend_label

    doc.add(Heading("Language models"), Text(INTRO))
    for dataset, model in pairs:
        pair = of_pair(runs, dataset, model)
        name = pair_title(dataset, model)
        doc.add(Heading(name, level=3))
        groups = analysis.protocol_groups(pair)
        titles = protocol_titles([key for key, _ in groups])
        if len(groups) > 1:
            doc.add(Text(f"These runs were evaluated under {len(groups)} different protocols, shown as "
                         f"separate groups; {NOT_COMPARED}."))
        for index, (key, group) in enumerate(groups):
            title = titles[key]
            doc.add(Heading(f"Protocol: {title}", level=4))
            if key == analysis.NO_PROTOCOL:
                doc.add(Text("These runs recorded no evaluation protocol (lm_protocol), so their "
                             "perplexities are compared with those of no other group."))
            else:
                doc.add(Table(protocol_table(key, group),
                              f"{name}, protocol {title}: what these perplexities were measured on "
                              "(md5 and hash shortened; calibration: the training sequences the "
                              "pruning scores saw)"))
            finetuned = analysis.lm_finetuned(group)
            pruned = group[~np.isclose(pd.to_numeric(group["compression"], errors="coerce"), 1.0)]
            if pruned.empty:
                doc.add(Text("Only unpruned controls (compression 1) finished: nothing to plot yet."))
            else:
                fig = perplexity_figure(group, title=f"{name}\n{title}", labeller=legend_label,
                                        finetuned=finetuned)
                if fig is not None:
                    suffix = f"-{index + 1}" if len(groups) > 1 else ""
                    stages = ("before and after fine-tuning (columns)" if finetuned
                              else "one-shot: the pruned models were not fine-tuned")
                    doc.add(Image(fig, f"{dataset}-{model}-perplexity{suffix}",
                                  f"{name}, protocol {title}: perplexity (log scale; lower is better) "
                                  f"against the compression ratio (all parameters / nonzero parameters, "
                                  f"log scale), one row per split, {stages}; lines are seed means, bands "
                                  "from the lowest to the highest seed. Dashed: the dense model"
                                  + ("; dotted: the unpruned control fine-tuned with the same recipe"
                                     if finetuned else "") + "."))
            table = results_table(group, finetuned)
            if not table.empty:
                doc.add(Table(table, f"{name}, protocol {title}: mean {PM} std over seeds (ppl = "
                                     "perplexity, lower is better; bpc = bits per token; FT = fine-tuning; "
                                     "\u0394 = change from the dense model of the same seed; speedup: "
                                     "theoretical, dense / remaining multiply-accumulates)"
                                     + ("" if finetuned else "; the pruned models were not fine-tuned")))
        pair_layers = of_pair(layers, dataset, model)
        fig = layer_density_figure(pair_layers, title=name, labeller=legend_label) if len(pair_layers) else None
        if fig is not None:
            doc.add(Image(fig, f"{dataset}-{model}-layer-density",
                          f"{name}: fraction of each prunable layer's weights kept, one run per strategy "
                          "at the largest compression all strategies reached."))
