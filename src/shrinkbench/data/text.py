"""Text data sets for language models: char or byte tokens, random contiguous training blocks, and
deterministic sliding evaluation windows that score every token exactly once (docs/data.md).

A text data set is a folder with three UTF-8 files (train / valid / test). `get_data` returns:

- train: `BlockLoader`, `len(train tokens) // block_size` blocks per epoch, each starting at a
  position drawn uniformly from the seed and epoch; yields int64 (x, y) of shape (B, block_size)
  with y = x shifted by one token;
- val / test: `WindowLoader`, windows of `eval_length` tokens every `eval_stride` tokens; y is -100
  (IGNORE_INDEX) wherever the target was already scored by an earlier window.

Every loader carries `vocab` (a `Vocab`) and `protocol` (a JSON-ready dict); `text_protocol(bundle)`
gathers them for a run to store.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError, DataError, DataNotFound
from .base import DataBundle, Dataset, DatasetInfo, Request, register_dataset
from .download import fetch_first, file_digest
from .loader import CALIBRATION_STREAM, SHUFFLE_STREAM, epoch_generator, num_batches

IGNORE_INDEX = -100
TOKENIZERS = ("char", "byte")
SPLITS = ("train", "valid", "test")
_MAX_CODEPOINT = 0x110000
_CHUNK = 1 << 24  # characters tokenized at a time (bounds the temporary UTF-32 copy)


@dataclass(frozen=True)
class Vocab:
    """A tokenizer and its vocabulary: `char` (the sorted characters of the training split, then
    one <unk> id) or `byte` (the 256 byte values of the UTF-8 encoding, no <unk>)."""

    tokenizer: str
    chars: str = ""

    @classmethod
    def from_text(cls, tokenizer: str, text: str) -> Vocab:
        """The vocabulary of `tokenizer` for a training text (its characters, sorted)."""
        if tokenizer == "byte":
            return cls("byte")
        seen = np.zeros(_MAX_CODEPOINT, dtype=bool)
        for lo in range(0, len(text), _CHUNK):
            seen[_codepoints(text[lo:lo + _CHUNK])] = True
        return cls("char", "".join(map(chr, np.flatnonzero(seen).tolist())))

    @property
    def size(self) -> int:
        """Number of token ids (the model's output classes)."""
        return 256 if self.tokenizer == "byte" else len(self.chars) + 1

    @property
    def unk_id(self) -> int | None:
        """The id of characters not in the vocabulary (the last id), None for bytes."""
        return None if self.tokenizer == "byte" else len(self.chars)

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit digest of the tokenizer and vocabulary."""
        blob = f"{self.tokenizer}\n{self.chars}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(blob).hexdigest()[:16]

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64) of `text`; unseen characters map to `unk_id`."""
        return torch.from_numpy(self.encode_array(text).astype(np.int64))

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of `text` as a compact numpy array (uint8 for bytes, int32 for chars)."""
        if self.tokenizer == "byte":
            return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).copy()
        lut = np.full(_MAX_CODEPOINT, len(self.chars), dtype=np.int32)
        lut[_codepoints(self.chars)] = np.arange(len(self.chars), dtype=np.int32)
        out = np.empty(len(text), dtype=np.int32)
        for lo in range(0, len(text), _CHUNK):
            out[lo:lo + _CHUNK] = lut[_codepoints(text[lo:lo + _CHUNK])]
        return out

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The text of token ids; <unk> (and invalid UTF-8 bytes) decode to U+FFFD."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self.tokenizer == "byte":
            return bytes(values).decode("utf-8", "replace")
        return "".join(self.chars[i] if 0 <= i < len(self.chars) else "\ufffd" for i in values)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def read_text(path: Path) -> str:
    """A UTF-8 split file, read as is (no newline translation); any problem is one DataError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset "
                        f"{exc.start} cannot be decoded (text data sets read UTF-8 files)"
                        ) from None
    if not text:
        raise DataError(f"{path} is empty; a text split needs at least 2 tokens")
    return text


def text_options(options: dict[str, Any]) -> tuple[str, int, int, int]:
    """(tokenizer, block_size, eval_length, eval_stride) of checked options, defaults resolved:
    eval_length = block_size, eval_stride = eval_length // 2 (at least 1)."""
    tokenizer = options["tokenizer"]
    if tokenizer not in TOKENIZERS:
        raise ConfigError(f"data.options.tokenizer: expected one of {', '.join(TOKENIZERS)}, "
                          f"got {tokenizer!r}")

    def positive(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"data.options.{key}: expected an integer >= 1, got {value!r}")
        return value

    block = positive("block_size", options["block_size"])
    length = block if options["eval_length"] is None else positive("eval_length",
                                                                   options["eval_length"])
    stride = max(1, length // 2) if options["eval_stride"] is None else positive(
        "eval_stride", options["eval_stride"])
    if stride > length:
        raise ConfigError(f"data.options.eval_stride ({stride}) must be <= eval_length ({length}), "
                          f"or some tokens would never be scored")
    return tokenizer, block, length, stride


def _given_vocab(options: dict[str, Any], tokenizer: str) -> Vocab | None:
    chars = options.get("vocab")
    if chars is None:
        return None
    if tokenizer == "byte":
        raise ConfigError("data.options.vocab applies to the char tokenizer only "
                          "(byte has 256 ids)")
    if not isinstance(chars, str) or not chars or "".join(sorted(set(chars))) != chars:
        raise ConfigError("data.options.vocab: expected the sorted, distinct characters of a "
                          f"vocabulary (as a run stores it), got {chars!r:.60}")
    return Vocab("char", chars)


def window_plan(num_tokens: int, length: int, stride: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, first scored position in each window, window length) of the evaluation windows.

    Window k reads tokens[s_k : s_k + L] and predicts tokens[s_k + 1 : s_k + L + 1]. s_0 = 0 and
    s_k = min(k * stride, N - 1 - L); window 0 scores all L targets and each later one only those
    past the previous window's end (its last `stride` positions, fewer for the final window), so
    every target 1..N-1 is scored exactly once. A split shorter than L + 1 tokens is one window.
    """
    length = min(length, num_tokens - 1)
    last = num_tokens - 1 - length
    count = 1 + math.ceil(last / stride)
    starts = np.minimum(np.arange(count, dtype=np.int64) * stride, last)
    first = np.zeros(count, dtype=np.int64)
    first[1:] = length - np.diff(starts)
    return starts, first, length


class BlockLoader:
    """Training batches of contiguous token blocks; block starts depend on (seed, epoch) alone."""

    def __init__(self, tokens: torch.Tensor, vocab: Vocab, *, block_size: int, batch_size: int,
                 seed: int, device: torch.device, protocol: dict[str, Any]) -> None:
        self.device = torch.device(device)
        self.tokens = tokens.to(self.device)
        self.vocab = vocab
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.protocol = protocol
        self._offsets = torch.arange(block_size + 1, device=self.device)

    @property
    def num_samples(self) -> int:
        """Blocks per epoch: len(train tokens) // block_size."""
        return len(self.tokens) // self.block_size

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.batch_size, False)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch`."""
        self.epoch = int(epoch)

    def starts(self, epoch: int) -> torch.Tensor:
        """The block starts of `epoch`, uniform in [0, len(tokens) - block_size - 1]."""
        gen = epoch_generator(self.seed, epoch, SHUFFLE_STREAM)
        high = len(self.tokens) - self.block_size
        return torch.randint(0, high, (self.num_samples,), generator=gen)

    def check_calibration(self, samples: int, length: int | None) -> int:
        """The calibration sequence length (`length`, or the block size), refused in one line when
        the training split cannot hold one such sequence and its next-token targets."""
        length = self.block_size if length is None else length
        if length + 1 > len(self.tokens):
            raise DataError(f"pruning.calibration_length: {length} tokens (and one more for the "
                            f"targets) do not fit the {len(self.tokens)} training tokens")
        starts = len(self.tokens) - length
        if samples > starts:
            raise DataError(f"pruning.calibration_samples: {samples} is more than the {starts} "
                            f"distinct sequences of {length} tokens in the training split")
        return length

    def calibration(self, samples: int, seed: int, batch_size: int,
                    length: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`samples` training sequences of `length` tokens (default: the block size) at starts
        drawn uniformly by `seed`, with their next-token targets, in batches."""
        length = self.check_calibration(samples, length)
        gen = epoch_generator(seed, 0, CALIBRATION_STREAM)
        starts = torch.randint(0, len(self.tokens) - length, (samples,), generator=gen)
        offsets = torch.arange(length + 1, device=self.device)
        return [self._block(part, offsets) for part in starts.to(self.device).split(batch_size)]

    def _block(self, starts: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets of the sequences at `starts` (`offsets`: 0 .. length)."""
        chunk = self.tokens[starts[:, None] + offsets].long()
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        starts = self.starts(epoch).to(self.device)
        for b in range(len(self)):
            yield self._block(starts[b * self.batch_size:(b + 1) * self.batch_size], self._offsets)


class WindowLoader:
    """Evaluation batches of sliding windows; targets already scored are IGNORE_INDEX."""

    def __init__(self, tokens: torch.Tensor, vocab: Vocab, *, length: int, stride: int,
                 batch_size: int, device: torch.device, protocol: dict[str, Any]) -> None:
        self.device = torch.device(device)
        self.tokens = tokens.to(self.device)
        self.vocab = vocab
        starts, first, self.length = window_plan(len(tokens), length, stride)
        self.stride = stride
        self.starts = torch.from_numpy(starts).to(self.device)
        self.first_scored = torch.from_numpy(first).to(self.device)
        self.batch_size = batch_size
        self.protocol = protocol
        self._offsets = torch.arange(self.length, device=self.device)

    @property
    def num_samples(self) -> int:
        """Windows in this split."""
        return len(self.starts)

    @property
    def tokens_scored(self) -> int:
        """Targets scored over the whole split: every token but the first."""
        return len(self.tokens) - 1

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.batch_size, False)

    def set_epoch(self, epoch: int) -> None:
        """Evaluation windows are the same every epoch; kept for the Loader interface."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = self.starts[sl, None] + self._offsets
            x = self.tokens[idx].long()
            y = self.tokens[idx + 1].long()
            y.masked_fill_(self._offsets[None, :] < self.first_scored[sl, None], IGNORE_INDEX)
            yield x, y


def text_protocol(bundle: DataBundle) -> dict[str, Any]:
    """The protocol facts of a text bundle (JSON-ready): tokenizer, vocabulary and its hash, block
    size, and per split the file, tokens, windows, eval_length, eval_stride and tokens scored."""
    if not isinstance(bundle.test, WindowLoader):
        raise ConfigError(f"data set {bundle.info.name!r} is not a text data set; it has no "
                          f"language-model protocol")
    vocab = bundle.test.vocab
    return {"dataset": bundle.info.name, "tokenizer": vocab.tokenizer, "vocab": vocab.chars,
            "vocab_size": vocab.size, "vocab_hash": vocab.hash,
            "train": dict(bundle.train.protocol),  # type: ignore[attr-defined]
            "val": None if bundle.val is None else dict(bundle.val.protocol),  # type: ignore
            "test": dict(bundle.test.protocol)}


class TextDataset(Dataset):
    """Three UTF-8 files (train/valid/test) in one folder; subclasses say where and how to get
    it."""

    mean = ()
    std = ()
    #: split -> file name inside the folder
    files: ClassVar[dict[str, str]] = {"train": "train.txt", "valid": "valid.txt",
                                       "test": "test.txt"}
    #: the folder under the data dir (the `root` option overrides it)
    folder: ClassVar[str] = ""
    downloadable: ClassVar[bool] = False
    #: vocabulary size of the char tokenizer, when known without reading the files
    char_vocab_size: ClassVar[int | None] = None
    options: ClassVar[dict[str, Any]] = {"root": None, "tokenizer": "char", "block_size": 128,
                                         "eval_length": None, "eval_stride": None, "vocab": None}

    def directory(self, data_dir: Path, options: dict[str, Any]) -> Path:
        """The folder holding the split files: the `root` option, else <data dir>/<folder>."""
        return Path(options["root"]).expanduser() if options["root"] else data_dir / self.folder

    def paths(self, folder: Path) -> dict[str, Path]:
        """Split -> path of its file in `folder`."""
        return {split: folder / name for split, name in self.files.items()}

    def obtain(self, folder: Path, options: dict[str, Any]) -> None:
        """Fetch or build the missing files into `folder` (data sets that can)."""
        raise NotImplementedError

    def check(self, paths: dict[str, Path], options: dict[str, Any]) -> None:
        """Checks of the files before reading them (checksums, where published)."""

    def locate(self, request: Request) -> dict[str, Path]:
        """The split files, obtained first when missing and `download` is set."""
        folder = self.directory(request.root, request.options)
        paths = self.paths(folder)
        if not all(p.is_file() for p in paths.values()):
            if not (request.download and self.downloadable):
                missing = ", ".join(p.name for p in paths.values() if not p.is_file())
                raise DataNotFound(
                    f"data set {self.name!r} not found in {folder}: missing {missing}",
                    folder=self.folder, downloadable=self.downloadable, root_option=True)
            self.obtain(folder, request.options)
        self.check(paths, request.options)
        return paths

    def info(self, options: dict[str, Any]) -> DatasetInfo:
        """Vocabulary size (when known without reading) and input shape (block_size,)."""
        tokenizer, block, _, _ = text_options(options)
        vocab = _given_vocab(options, tokenizer)
        classes = (256 if tokenizer == "byte" else vocab.size if vocab is not None
                   else self.char_vocab_size)
        return DatasetInfo(self.name, classes, (block,), (), (), None, None, None)

    def build(self, request: Request) -> DataBundle:
        """Read the splits, build the vocabulary from train, and make the loaders."""
        options = request.options
        tokenizer, block, length, stride = text_options(options)
        if request.val_size not in (None, 0) or isinstance(request.val_size, bool):
            raise ConfigError(f"val_size: data set {self.name!r} has a fixed validation split "
                              f"({self.files['valid']}); give None (use it) or 0 (no validation), "
                              f"got {request.val_size!r}")
        paths = self.locate(request)
        texts = {split: read_text(path) for split, path in paths.items()
                 if split != "valid" or request.val_size != 0}
        vocab = _given_vocab(options, tokenizer) or Vocab.from_text(tokenizer, texts["train"])
        tokens = {split: torch.from_numpy(vocab.encode_array(text))
                  for split, text in texts.items()}
        for split, toks in tokens.items():
            need = block + 1 if split == "train" else 2
            if len(toks) < need:
                raise DataError(f"{paths[split]} holds {len(toks)} {tokenizer} tokens; the {split} "
                                f"split needs at least {need}"
                                + (f" (block_size {block} + 1)" if split == "train" else ""))
        common = {"dataset": self.name, "tokenizer": tokenizer, "vocab_size": vocab.size,
                  "vocab_hash": vocab.hash}

        def stats(split: str) -> dict[str, Any]:
            toks = tokens[split]
            unk = 0 if vocab.unk_id is None else int((toks == vocab.unk_id).sum())
            return {**common, "split": split, "file": paths[split].name,
                    "file_md5": file_digest(paths[split]), "tokens": len(toks), "unk_tokens": unk}

        def window_loader(split: str) -> WindowLoader:
            loader = WindowLoader(tokens[split], vocab, length=length, stride=stride,
                                  batch_size=request.eval_batch_size, device=request.device,
                                  protocol={})
            loader.protocol = {**stats(split), "eval_length": loader.length, "eval_stride": stride,
                               "windows": loader.num_samples, "tokens_scored": loader.tokens_scored,
                               "ignore_index": IGNORE_INDEX}
            return loader

        n_train = len(tokens["train"]) // block
        train = BlockLoader(tokens["train"], vocab, block_size=block, batch_size=request.batch_size,
                            seed=request.seed, device=request.device,
                            protocol={**stats("train"), "block_size": block,
                                      "samples_per_epoch": n_train,
                                      "sampling": "uniform random block starts per (seed, epoch)"})
        val = window_loader("valid") if "valid" in tokens else None
        test = window_loader("test")
        info = DatasetInfo(self.name, vocab.size, (block,), (), (), train.num_samples,
                           0 if val is None else val.num_samples, test.num_samples)
        return DataBundle(train, val, test, info)


@register_dataset("text", aliases=("text-folder",))
class TextFolder(TextDataset):
    """Any folder of train.txt / valid.txt / test.txt (option `root`, else <data dir>/text)."""

    description = "any folder of UTF-8 train.txt/valid.txt/test.txt (option root=...), char or byte"
    folder = "text"


class WikiText(TextDataset):
    """A raw WikiText variant: the published zip, three `wiki.*.raw` files inside."""

    files = {"train": "wiki.train.raw", "valid": "wiki.valid.raw", "test": "wiki.test.raw"}
    downloadable = True
    options: ClassVar[dict[str, Any]] = {**TextDataset.options, "verify": True, "mirror": None}
    archive: ClassVar[str] = ""
    archive_sha256: ClassVar[str] = ""
    mirrors: ClassVar[tuple[str, ...]] = ("https://wikitext.smerity.com",
                                          "https://s3.amazonaws.com/research.metamind.io/wikitext")

    def obtain(self, folder: Path, options: dict[str, Any]) -> None:
        """Download the zip next to `folder` (checked), extract the three files, delete the zip."""
        archive = folder.parent / self.archive
        if archive.is_file():
            if options["verify"] and file_digest(archive, "sha256") != self.archive_sha256:
                raise DataError(f"{archive} fails its checksum (expected sha256 "
                                f"{self.archive_sha256}); delete it, or pass verify=False")
        else:
            mirrors = (options["mirror"],) if options["mirror"] else self.mirrors
            fetch_first([f"{m.rstrip('/')}/{self.archive}" for m in mirrors], archive,
                        sha256=self.archive_sha256)
        extract_members(archive, {f"{self.folder}/{name}": folder / name
                                  for name in self.files.values()})
        archive.unlink()


def extract_members(archive: Path, members: dict[str, Path]) -> None:
    """Copy the named zip members to their paths (temporary file, then rename); nothing else is
    read from the archive, so no member can land anywhere else."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            missing = [name for name in members if name not in names]
            if missing:
                raise DataError(f"archive {archive} lacks {', '.join(missing)}")
            for name, dest in members.items():
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
                try:
                    with zf.open(name) as src, os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a data file is readable by all
                    os.replace(tmp, dest)
                finally:
                    Path(tmp).unlink(missing_ok=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(f"archive {archive} is corrupt or unreadable "
                        f"({type(exc).__name__}: {exc})") from None


@register_dataset("wikitext2", aliases=("wikitext-2", "wikitext-2-raw"))
class WikiText2(WikiText):
    """WikiText-2 (raw), Merity et al. 2016, CC BY-SA."""

    description = "WikiText-2 raw (wiki.{train,valid,test}.raw), char or byte tokens"
    folder = "wikitext-2-raw"
    archive = "wikitext-2-raw-v1.zip"
    archive_sha256 = "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11"


@register_dataset("wikitext103", aliases=("wikitext-103", "wikitext-103-raw"))
class WikiText103(WikiText):
    """WikiText-103 (raw), Merity et al. 2016, CC BY-SA."""

    description = "WikiText-103 raw (wiki.{train,valid,test}.raw), char or byte tokens"
    folder = "wikitext-103-raw"
    archive = "wikitext-103-raw-v1.zip"
    archive_sha256 = "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794"
