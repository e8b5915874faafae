"""Fetching and checking Vosk models: ``ivr model download|path|check``.

A download never leaves half a model behind:

1. the zip is streamed to ``<dir>/.download/<name>.zip.part`` (an interrupted download is resumed with an
   HTTP Range request on the next run when the server allows it, otherwise restarted);
2. its length is checked against Content-Length, the zip is tested (``zipfile.testzip``) and its SHA-256
   computed (and compared when config/asr.yaml gives one);
3. it is unpacked into a hidden temporary directory in the same parent, checked to be a Vosk model, given an
   ``ivr-manifest.json`` (name, URL, size, SHA-256, date), and moved into place with ``os.replace``.

Any failure or Ctrl-C removes the temporary directory; a corrupt zip is deleted so a retry starts afresh.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ivr.content import paths
from ivr.errors import IvrError
from ivr.media import asr

ENV_URL = "IVR_MODEL_URL"
MANIFEST = "ivr-manifest.json"
CHUNK = 1 << 16

DEFAULT_MODELS = {
    "small": {"name": "vosk-model-small-vn-0.4", "size_mb": 32, "sha256": ""},
    "full": {"name": "vosk-model-vn-0.4", "size_mb": 78, "sha256": ""},
}
DEFAULT_URL_BASE = "https://alphacephei.com/vosk/models/"


def known_models() -> dict[str, dict]:
    models = asr.settings().get("models") or {}
    return {k: dict(v) for k, v in models.items() if isinstance(v, dict) and v.get("name")} or DEFAULT_MODELS


def model_url(name: str) -> str:
    base = os.environ.get(ENV_URL) or asr.settings().get("url_base") or DEFAULT_URL_BASE
    return base.rstrip("/") + "/" + name + ".zip"


def _spec(kind: str) -> dict:
    models = known_models()
    if kind not in models:
        raise IvrError(f"unknown model {kind!r}", f"choose one of: {', '.join(models)}")
    return models[kind]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


ProgressFn = Callable[[int, int | None], None]


def _fetch(url: str, part: Path, *, progress: bool, on_progress: ProgressFn | None, timeout: float) -> int:
    """Download ``url`` into ``part`` (resuming it if present). Returns the expected total length."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ivr-smartca"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete (or stale): start again
            part.unlink()
            return _fetch(url, part, progress=progress, on_progress=on_progress, timeout=timeout)
        raise IvrError(
            f"download of {url} failed: HTTP {exc.code} {exc.reason}",
            f"check the model name and the server; set {ENV_URL} to a mirror's base URL if this one is down",
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise IvrError(
            f"cannot reach {url} ({reason})",
            f"check the network, or set {ENV_URL} to a reachable mirror; run the command again to resume",
        ) from None

    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                raise IvrError(f"{url}: the server answered the resume request with a wrong range",
                               f"delete {part} and run the command again")
            total = int(match.group(2)) if match.group(2) != "*" else (have + int(length) if length else None)
            mode = "ab"
        else:  # 200: the server ignores Range (or nothing to resume): start from zero
            have = 0
            total = int(length) if length else None
            mode = "wb"
        from tqdm import tqdm

        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=Path(url).name, disable=not progress, leave=False)
        done = have
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                        raise IvrError(
                            f"download of {url} was cut off after {done} of {total or '?'} bytes ({exc})",
                            "run the command again: it resumes where it stopped",
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    bar.update(len(block))
                    if on_progress is not None:
                        on_progress(done, total)
        finally:
            bar.close()
    if total is not None and done != total:
        raise IvrError(
            f"download of {url} stopped after {done} of {total} bytes",
            "run the command again: it resumes where it stopped",
        )
    return done


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        if not target.is_relative_to(root):
            raise IvrError(f"the zip holds a path outside its folder: {info.filename!r}",
                           "the archive is not a genuine model; get it from the official source")
    zf.extractall(dest)


def _model_root(unpacked: Path) -> Path | None:
    if asr.is_model_dir(unpacked):
        return unpacked
    subdirs = [p for p in unpacked.iterdir() if p.is_dir() and not p.name.startswith("__MACOSX")]
    if len(subdirs) == 1 and asr.is_model_dir(subdirs[0]):
        return subdirs[0]
    return None


def download_model(kind: str = "small", dest_dir: str | os.PathLike | None = None, *, progress: bool = True,
                   on_progress: ProgressFn | None = None, timeout: float = 60.0) -> Path:
    """Download, verify and install model ``kind`` ("small" or "full") into ``dest_dir/<name>/``
    (default: the repository's models/). Returns the installed directory."""
    spec = _spec(kind)
    name = spec["name"]
    dest = Path(dest_dir).expanduser() if dest_dir else paths.models_dir()
    target = dest / name
    if target.exists():
        if asr.is_model_dir(target):
            return target.resolve()
        raise IvrError(f"{target} exists but is not a Vosk model (missing {', '.join(asr.missing_parts(target))})",
                       "remove that directory and run the command again")
    url = model_url(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = dest / ".download"
        staging.mkdir(exist_ok=True)
    except OSError as exc:
        raise IvrError(f"cannot write to {dest} ({exc.strerror})", "choose a writable folder with --dir") from None
    part = staging / f"{name}.zip.part"

    size = _fetch(url, part, progress=progress, on_progress=on_progress, timeout=timeout)

    try:
        with zipfile.ZipFile(part) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        part.unlink(missing_ok=True)
        raise IvrError(f"the file downloaded from {url} is not a valid zip ({exc})",
                       f"run the command again; if it keeps failing, check the server or {ENV_URL}") from None
    digest = _sha256(part)
    expected = (spec.get("sha256") or "").strip().lower()
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise IvrError(f"{url}: SHA-256 {digest} does not match the expected {expected}",
                       "the file is damaged or not the published model; run the command again")

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.unpack-", dir=dest))
    try:
        with zipfile.ZipFile(part) as zf:
            try:
                _safe_extract(zf, tmp)
            except IvrError:
                part.unlink(missing_ok=True)
                raise
        root = _model_root(tmp)
        if root is None:
            part.unlink(missing_ok=True)
            raise IvrError(f"the zip from {url} does not contain a Vosk model "
                           "(needs am/final.mdl, conf/model.conf and a graph)",
                           f"check the model name and {ENV_URL}")
        manifest = {
            "name": name,
            "url": url,
            "size": size,
            "sha256": digest,
            "sha256_source": "config/asr.yaml" if expected else "computed at download (no published value)",
            "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(root, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part.unlink(missing_ok=True)
    try:
        staging.rmdir()
    except OSError:
        pass
    return target.resolve()


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_model(path: Path) -> dict:
    """Load the model at ``path`` and describe it (name, rate, size, language, grammar support)."""
    t0 = time.perf_counter()
    model = asr.load_model(path)
    load_s = time.perf_counter() - t0
    path = model.ivr_path
    info = {
        "name": path.name,
        "path": str(path),
        "sample_rate": model.ivr_sample_rate,
        "size_mb": round(_dir_size(path) / 1e6, 1),
        "vietnamese": asr.is_vietnamese(path),
        "grammar": model.ivr_grammar,
        "load_seconds": round(load_s, 2),
    }
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            info["sha256"] = json.loads(manifest.read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError):
            pass
    return info
