"""Downloads against a loopback HTTP server (fake Hub + fake release mirror): success, checksum
refusal, resume, dropped connections, server errors, offline mode, archives, and the CLI."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from caphuman.errors import CapHumanError, MissingWeightsError
from caphuman.weights.registry import WeightFile

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "a" * 40


class FakeServer:
    """Serves ``files`` (path -> bytes) with HEAD/GET, Range requests and the Hub's headers.

    ``fail``: path -> HTTP status to answer instead; ``drop``: path -> how many GETs are cut off
    after half the body (the connection closes). ``requests``: (method, path, Range header)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}
        self.drop: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _serve(self, body_wanted: bool):
                path = self.path.split("?")[0]
                server.requests.append((self.command, path, self.headers.get("Range")))
                if path in server.fail:
                    self.send_response(server.fail[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                if not body_wanted:
                    return
                if server.drop.get(path, 0) > 0:
                    server.drop[path] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_HEAD(self):
                self._serve(False)

            def do_GET(self):
                self._serve(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def gets(self, path):
        return [r for r in self.requests if r[0] == "GET" and r[1] == path]


@pytest.fixture
def server(monkeypatch):
    """A running fake server; huggingface_hub and plain URLs pointed at it; online mode."""
    from huggingface_hub import constants

    srv = FakeServer()
    srv.thread.start()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", srv.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", srv.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("CAPHUMAN_DOWNLOAD_MIRROR", srv.url + "/mirror")
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _state_dict_bytes(seed=0) -> bytes:
    import torch

    g = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"conv.weight": torch.randn(4, 3, generator=g), "fc.bias": torch.zeros(4)}, buf)
    return buf.getvalue()


def _url_entry(**kw) -> WeightFile:
    base = dict(key="facenet_test", path="facenet/model.pt", description="test model", licence="TEST-LICENCE",
                needed_for="tests", url="https://example.org/releases/v1/model.pt", check="torch_state_dict")
    base.update(kw)
    return WeightFile(**base)


MIRROR_PATH = "/mirror/example.org/releases/v1/model.pt"


def _quiet(*_):
    pass


# ---------------------------------------------------------------------------- plain URLs
def test_url_download_verified_placed_and_recorded(server, tmp_path):
    from caphuman.weights.fetch import fetch, read_record

    data = _state_dict_bytes()
    server.files[MIRROR_PATH] = data
    lines = []
    out = fetch(_url_entry(), tmp_path, log=lines.append)
    assert out == tmp_path / "facenet/model.pt" and out.read_bytes() == data
    assert any("TEST-LICENCE" in x for x in lines) and any("verified" in x for x in lines)
    assert read_record(tmp_path)["facenet_test"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not list((tmp_path / ".downloads").glob("*.part"))
    # present and intact: a second call does not touch the network
    n = len(server.requests)
    assert fetch(_url_entry(), tmp_path, log=_quiet) == out and len(server.requests) == n


def test_url_wrong_checksum_is_refused_and_removed(server, tmp_path):
    from caphuman.weights.fetch import ChecksumError, fetch

    server.files[MIRROR_PATH] = _state_dict_bytes()
    with pytest.raises(ChecksumError, match="md5 check.*deleted"):
        fetch(_url_entry(md5="0" * 32), tmp_path, log=_quiet)
    assert not (tmp_path / "facenet/model.pt").exists()
    assert not list(tmp_path.rglob("*.part"))
    # a file that is not a checkpoint at all fails the structural check the same way
    server.files[MIRROR_PATH] = b"<html>not a model</html>"
    with pytest.raises(ChecksumError, match="not a usable checkpoint"):
        fetch(_url_entry(), tmp_path, log=_quiet)
    assert not (tmp_path / "facenet/model.pt").exists() and not list(tmp_path.rglob("*.part"))


def test_url_resumes_an_interrupted_download(server, tmp_path):
    from caphuman.weights.fetch import fetch

    data = _state_dict_bytes(1)
    server.files[MIRROR_PATH] = data
    part = tmp_path / ".downloads" / "model.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:700])  # what an earlier, interrupted run left behind
    md5 = hashlib.md5(data).hexdigest()
    fetch(_url_entry(md5=md5), tmp_path, log=_quiet)
    assert (tmp_path / "facenet/model.pt").read_bytes() == data
    assert server.gets(MIRROR_PATH) == [("GET", MIRROR_PATH, "bytes=700-")]
    assert not part.exists()


def test_url_connection_dropped_mid_body_is_resumed(server, tmp_path):
    from caphuman.weights.fetch import fetch

    data = _state_dict_bytes(2)
    server.files[MIRROR_PATH] = data
    server.drop[MIRROR_PATH] = 1
    fetch(_url_entry(md5=hashlib.md5(data).hexdigest()), tmp_path, log=_quiet)
    assert (tmp_path / "facenet/model.pt").read_bytes() == data
    gets = server.gets(MIRROR_PATH)  # the cut-off body was retried (from where it stopped, if any chunk landed)
    assert len(gets) == 2 and gets[0][2] is None


@pytest.mark.parametrize("status", [404, 500])
def test_url_server_error_is_a_clear_message(server, tmp_path, status):
    from caphuman.weights.fetch import fetch

    server.fail[MIRROR_PATH] = status
    with pytest.raises(CapHumanError) as err:
        fetch(_url_entry(), tmp_path, log=_quiet)
    msg = str(err.value)
    assert "facenet_test: could not download" in msg and MIRROR_PATH in msg and str(status) in msg
    assert "run the same command again" in msg
    assert not (tmp_path / "facenet/model.pt").exists()


def test_offline_mode_never_touches_the_network(server, tmp_path, monkeypatch):
    from caphuman.weights.fetch import fetch

    server.files[MIRROR_PATH] = _state_dict_bytes()
    with pytest.raises(MissingWeightsError, match="not available offline"):
        fetch(_url_entry(), tmp_path, offline=True, log=_quiet)
    hub = WeightFile(key="hubfile", path="h/f.bin", description="d", licence="L", needed_for="t",
                     hub_repo="org/repo", hub_filename="f.bin")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the environment switch counts as --offline
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as huggingface_hub reads it at import
    with pytest.raises(MissingWeightsError, match="hubfile: not available offline"):
        fetch(hub, tmp_path, log=_quiet)
    assert server.requests == []


def test_gated_files_are_never_fetched(tmp_path):
    from caphuman.weights.fetch import fetch
    from caphuman.weights.registry import REGISTRY

    with pytest.raises(MissingWeightsError, match="licence-gated.*flame.is.tue.mpg.de"):
        fetch(REGISTRY["flame"], tmp_path, log=_quiet)


# ---------------------------------------------------------------------------- Hub files
def _hub_entry(**kw) -> WeightFile:
    base = dict(key="parser_test", path="face-parsing/p.pth", description="parser", licence="MIT",
                needed_for="tests", hub_repo="someone/mirror", hub_filename="p.pth", check="torch_state_dict")
    base.update(kw)
    return WeightFile(**base)


HUB_PATH = "/someone/mirror/resolve/main/p.pth"


def test_hub_file_verified_by_published_md5(server, tmp_path):
    from caphuman.weights.fetch import fetch, read_record

    data = _state_dict_bytes(3)
    server.files[HUB_PATH] = data
    out = fetch(_hub_entry(md5=hashlib.md5(data).hexdigest()), tmp_path, log=_quiet)
    assert out.read_bytes() == data and read_record(tmp_path)["parser_test"]["verified_by"] == "md5"
    assert not (tmp_path / ".downloads" / "parser_test").exists()  # staging cleaned up


def test_hub_file_wrong_md5_is_refused_and_removed(server, tmp_path):
    from caphuman.weights.fetch import ChecksumError, fetch

    server.files[HUB_PATH] = _state_dict_bytes(3)
    with pytest.raises(ChecksumError, match="md5 check"):
        fetch(_hub_entry(md5="f" * 32), tmp_path, log=_quiet)
    assert not (tmp_path / "face-parsing/p.pth").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith("p.pth")]


def test_hub_file_without_published_checksum_uses_the_hub_sha256(server, tmp_path):
    from caphuman.weights.fetch import fetch, read_record

    server.files[HUB_PATH] = _state_dict_bytes(4)
    fetch(_hub_entry(), tmp_path, log=_quiet)
    assert read_record(tmp_path)["parser_test"]["verified_by"] == "hub sha256"


# ---------------------------------------------------------------------------- archives
def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


PACK = ("det.onnx", "rec.onnx")
ZIP_PATH = "/mirror/example.org/releases/pack.zip"


def _zip_entry(**kw):
    base = dict(key="pack", path="insightface/models/pack", description="pack", licence="NC",
                needed_for="tests", url="https://example.org/releases/pack.zip", archive="zip", members=PACK,
                check="onnx_pack", notice="NON-COMMERCIAL RESEARCH USE ONLY")
    base.update(kw)
    return WeightFile(**base)


def test_zip_pack_is_unpacked_flattened_and_checked(server, tmp_path):
    from caphuman.weights.fetch import fetch

    server.files[ZIP_PATH] = _zip({"pack/det.onnx": b"d" * 100, "pack/rec.onnx": b"r" * 50})
    lines = []
    out = fetch(_zip_entry(), tmp_path, log=lines.append)
    assert sorted(p.name for p in out.iterdir()) == ["det.onnx", "rec.onnx"]
    assert (out / "det.onnx").read_bytes() == b"d" * 100
    assert "NON-COMMERCIAL" in lines[0]  # the licence notice comes before the download
    assert not list((tmp_path / ".downloads").glob("*.zip*"))


def test_zip_missing_member_traversal_and_bomb_are_refused(server, tmp_path):
    from caphuman.weights.fetch import ChecksumError, fetch

    server.files[ZIP_PATH] = _zip({"det.onnx": b"d"})
    with pytest.raises(ChecksumError, match="lacks rec.onnx"):
        fetch(_zip_entry(), tmp_path, log=_quiet)
    server.files[ZIP_PATH] = _zip({"det.onnx": b"d", "rec.onnx": b"r", "../../evil.txt": b"x"})
    with pytest.raises(ChecksumError, match="outside the folder"):
        fetch(_zip_entry(), tmp_path, log=_quiet)
    assert not (tmp_path.parent / "evil.txt").exists() and not list(tmp_path.rglob("evil.txt"))
    server.files[ZIP_PATH] = _zip({"det.onnx": b"\0" * (8 << 20), "rec.onnx": b"r"})  # ~8 MB from a few KB
    with pytest.raises(ChecksumError, match="zip bomb"):
        fetch(_zip_entry(), tmp_path, log=_quiet)
    assert not (tmp_path / "insightface/models/pack").exists()


# ---------------------------------------------------------------------------- the command
def _cli(*args, env=None):
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "caphuman", *args], capture_output=True, text=True, env=e,
                          cwd=ROOT, timeout=300)


def test_dry_run_lists_every_public_file_and_touches_no_network(tmp_path):
    from caphuman.weights.download import GROUPS, plan
    from caphuman.weights.registry import REGISTRY

    rows = {r.key: r for r in plan("all", root=tmp_path)}
    assert set(rows) == set(REGISTRY)
    for key in ("caphuman", "backbone", "vae", "clip", "face_parsing", "facenet", "insightface", "flame_landmarks",
                "flame_uv", "lcm_lora"):
        assert key in GROUPS["all"] and rows[key].action == "download", key
    assert all(rows[k].action == "manual" for k in ("deca", "flame")) and "licence-gated" in rows["flame"].why
    assert rows["face_parsing"].checksum == "md5 ff26a222ce48a618a1fa820b46223cae"
    # the command, with both sources pointed at a closed port: a dry run must not try them
    p = _cli("download", "all", "--dry-run", env={"CAPHUMAN_CHECKPOINTS": str(tmp_path), "HF_HUB_OFFLINE": "0",
                                                  "HF_ENDPOINT": "http://127.0.0.1:9",
                                                  "CAPHUMAN_DOWNLOAD_MIRROR": "http://127.0.0.1:9"})
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "facenet" in out and "http://127.0.0.1:9/github.com/timesler/facenet-pytorch" in out
    assert "non-commercial" in out.lower() and "manual" in out
    assert "10 to download" in out and not list(tmp_path.iterdir())
    assert {r.key for r in rows.values() if r.action == "download"} <= set(GROUPS["all"])


def test_cli_downloads_from_mirrors_and_refuses_a_bad_file(server, tmp_path):
    """The user path: HF_ENDPOINT and CAPHUMAN_DOWNLOAD_MIRROR set, the real registry entries."""
    facenet = _state_dict_bytes(5)
    server.files["/mirror/github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"] = facenet
    server.files["/ManyOtherFunctions/face-parse-bisent/resolve/main/79999_iter.pth"] = _state_dict_bytes(6)
    env = {"CAPHUMAN_CHECKPOINTS": str(tmp_path), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": server.url,
           "CAPHUMAN_DOWNLOAD_MIRROR": server.url + "/mirror"}
    p = _cli("download", "facenet", env=env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "facenet/20180402-114759-vggface2.pt").read_bytes() == facenet
    # not the real BiSeNet: its MD5 is not CapHuman's, so it is refused and nothing stays behind
    p = _cli("download", "face_parsing", env=env)
    assert p.returncode == 2 and "md5 check" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "face-parsing/79999_iter.pth").exists()
    p = _cli("download", "facenet", "--offline", env=env)  # already there: fine offline
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------------------- readiness (doctor, banner)
def test_readiness_names_what_is_missing_and_the_one_command(tmp_path, tiny_weights, monkeypatch):
    import shutil

    from caphuman.weights.readiness import generation_readiness

    monkeypatch.delenv("CAPHUMAN_WEIGHTS", raising=False)
    monkeypatch.delenv("CAPHUMAN_WEIGHTS_REPO", raising=False)
    empty = generation_readiness(root=tmp_path)
    assert not empty.ready and empty.command == "python -m caphuman download all"
    names = [m.split(" ")[0] for m in empty.missing]
    assert names == ["caphuman", "backbone", "vae", "clip", "converted", "facenet", "face_parsing"]
    assert empty.line().startswith("ready to generate: no — missing: caphuman (caphuman/caphuman.ckpt)")
    assert empty.line().endswith("— run: python -m caphuman download all")
    # the tiny model carries its own identity encoders: nothing else is needed
    ok = generation_readiness(tiny_weights, root=tmp_path)
    assert ok.ready and ok.line() == f"ready to generate: yes (weights: {tiny_weights})"
    # a converted folder without identity encoders needs FaceNet and BiSeNet from checkpoints/
    conv = tmp_path / "caphuman-diffusers"
    shutil.copytree(tiny_weights, conv)
    shutil.rmtree(conv / "identity")
    part = generation_readiness(root=tmp_path)
    assert [m.split(" ")[0] for m in part.missing] == ["facenet", "face_parsing"]
    for key in ("facenet", "face_parsing"):
        from caphuman.weights.registry import local_path

        f = local_path(key, tmp_path)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    assert generation_readiness(root=tmp_path).ready


def test_doctor_answers_readiness_first(tmp_path):
    p = _cli("doctor", env={"CAPHUMAN_CHECKPOINTS": str(tmp_path)})
    assert p.returncode == 0
    first = p.stdout.splitlines()[0]
    assert first.startswith("ready to generate: no — missing: ") and "run: python -m caphuman download all" in first
