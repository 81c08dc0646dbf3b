"""HTTP(S) downloads that survive bad networks: retries, resume with Range, sha256.

The file grows as ``<dest>.part`` beside its final name; a killed or cut-off
download resumes from there on the next run. Only a complete file whose checksum
matches (when one is given) is renamed to ``dest``.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path

from toonvae.errors import ToonvaeError
from toonvae.files import sha256_of
from toonvae.progress import log, progress

CHUNK = 1 << 20


def fetch(url: str, dest: Path, sha256: str | None = None, *, retries: int = 5,
          timeout: float = 60.0, backoff: float = 1.0) -> str:
    """Download ``url`` to ``dest``; return its sha256. Reuses a verified ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        digest = sha256_of(dest)
        if sha256 is None or digest == sha256:
            log(f"using {dest} downloaded earlier (sha256 {digest})")
            return digest
        dest.unlink()  # a stale file from another version of the URL
    part = dest.with_name(dest.name + ".part")
    expected = None
    for attempt in range(retries + 1):
        try:
            expected = _get(url, part, timeout)
            break
        except _Retry as exc:
            if attempt == retries:
                part.unlink(missing_ok=True)
                raise ToonvaeError(f"{url}: download failed after {retries + 1} tries ({exc}); "
                                   "the partial file was removed; check the network and rerun") from None
            wait = backoff * 2 ** attempt
            log(f"{url}: {exc}; retrying in {wait:.0f}s (attempt {attempt + 2} of {retries + 1})")
            time.sleep(wait)
    size = part.stat().st_size
    if expected is not None and size != expected:
        part.unlink()
        raise ToonvaeError(f"{url}: truncated download ({size} of {expected} bytes); "
                           "the partial file was removed; rerun to download again")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise ToonvaeError(f"{url}: sha256 mismatch (got {digest}, expected {sha256}); "
                           "the partial file was removed; check the URL and the sha256 in params.yaml")
    if sha256 is None:
        log(f"{url}: sha256 {digest}; pin it with datasets.<name>.sha256 in params.yaml")
    part.replace(dest)
    return digest


class _Retry(Exception):
    """A failure worth another try: network errors, 5xx, a short body."""


def _get(url: str, part: Path, timeout: float) -> int | None:
    """Append the rest of ``url`` to ``part``; return the full size when the server says it."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "toonvae", "Range": f"bytes={have}-"} if have else {"User-Agent": "toonvae"}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is already whole (or longer): start over
            part.unlink()
            raise _Retry("server refused the resume range") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code}") from None
        raise ToonvaeError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL in params.yaml") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Retry(str(getattr(exc, "reason", exc))) from None
    with resp:
        length = resp.headers.get("Content-Length")
        if have and resp.status == 206:
            mode, start = "ab", have
        else:  # no partial file, or the server ignored Range and sends it all
            mode, start = "wb", 0
        total = start + int(length) if length is not None else None
        if start:
            log(f"resuming {url} at byte {start:,}")
        bar = progress(total=total, desc=f"downloading {url.rsplit('/', 1)[-1]}", unit="B",
                       unit_scale=True)
        with bar, open(part, mode) as f:
            bar.update(start)
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError) as exc:
                raise _Retry(f"connection lost ({type(exc).__name__})") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"connection closed at {size:,} of {total:,} bytes")
    return total
