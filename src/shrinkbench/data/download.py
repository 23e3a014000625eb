"""Checksummed downloads renamed into place atomically, checksums of files, safe archive extraction."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Sequence

from ..errors import DataError, DownloadError

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str]:
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    raise ValueError("fetch needs an md5 or sha256 checksum to verify the download")


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    accept: Callable[[Path], bool] | None = None,
) -> Path:
    """Download `url` to `dest`: into a temporary file beside it, verified, then renamed into place.

    The checksum is sha256 if given, else md5. A file whose checksum differs is still accepted when
    `accept(temp_path)` returns True (e.g. a re-compressed archive whose content is the published
    one). On any failure nothing is left at `dest` or beside it, and DownloadError is raised.
    """
    algorithm, expected = _expected(md5, sha256)
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise DownloadError(f"cannot write into {dest.parent} to download {url} ({exc})") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
        got = digest.hexdigest()
        if got != expected and not (accept is not None and accept(tmp)):
            raise DownloadError(f"checksum mismatch for {url}: expected {algorithm} {expected}, "
                                f"got {got}; nothing was written to {dest}")
        os.replace(tmp, dest)
        return dest
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"could not download {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"could not download {url}: {type(exc).__name__}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


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
