"""Checksummed downloads renamed into place atomically, and file checksums (used by data and models)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from . import common
from .errors import DownloadError

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (memoized by path, size and mtime)."""
    return common.file_digest(path, algorithm)


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
