"""Downloads from mirrors, and safe archive extraction (the checked download itself is shrinkbench.download)."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Sequence

from ..download import CHUNK, DEFAULT_TIMEOUT, fetch, file_digest
from ..errors import DataError, DownloadError

__all__ = ["fetch", "fetch_first", "file_digest", "safe_extract", "check_members"]


def fetch_first(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    accept: Callable[[Path], bool] | None = None,
) -> Path:
    """`fetch` from the first of `urls` (mirrors of one file) that delivers a verified file."""
    errors = []
    for url in urls:
        try:
            return fetch(url, dest, md5=md5, sha256=sha256, timeout=timeout, accept=accept)
        except DownloadError as exc:
            errors.append(str(exc))
    raise DownloadError(f"no mirror delivered {Path(dest).name}: " + "; ".join(errors))


def _is_absolute(name: str) -> bool:
    return (name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute()
            or PureWindowsPath(name).is_absolute() or bool(PureWindowsPath(name).drive))


def check_members(archive: Path, members: Sequence[tarfile.TarInfo], target: Path) -> None:
    """Refuse links, special files, absolute names and names that would land outside `target`."""
    base = target.resolve()
    for member in members:
        if not (member.isfile() or member.isdir()):
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise DataError(f"archive {archive} has member {member.name!r} that is a {kind}; "
                            f"refusing to extract it (only regular files and folders are allowed)")
        if _is_absolute(member.name):
            raise DataError(f"archive {archive} has member {member.name!r} with an absolute path; "
                            f"refusing to extract it")
        dest = (base / member.name).resolve()
        if dest != base and base not in dest.parents:
            raise DataError(f"archive {archive} has member {member.name!r} that would land outside "
                            f"{target}; refusing to extract it")


def safe_extract(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Extract a tar archive (any compression) inside `target`, refusing any escaping member.

    Every member is checked before anything is written; files are written into a temporary
    folder inside `target` and renamed into place only when the whole archive has been read.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            check_members(archive, members, target)
            for member in members:
                path = tmp / member.name
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have content
                    raise DataError(f"archive {archive}: cannot read member {member.name!r}")
                with source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
        for root, _dirs, files in os.walk(tmp):
            for file in files:
                src = Path(root) / file
                final = target / src.relative_to(tmp)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, final)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError) and not archive.exists():
            raise DataError(f"archive {archive} does not exist") from None
        raise DataError(f"archive {archive} is corrupt or truncated "
                        f"({type(exc).__name__}: {exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
