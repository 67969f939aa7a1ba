"""Downloads from a local HTTP server (127.0.0.1 only): checksum verification, no overwriting,
and archive extraction that refuses members escaping the target folder."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import logging
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitoseg.data.download import DATASETS, download, fetch_dataset, main, safe_extract
from mitoseg.data.em_volumes import lucchi_files, open_tif_volume, read_labels
from mitoseg.errors import InputError

LUCCHI_NAMES = ("training.tif", "training_groundtruth.tif", "testing.tif",
                "testing_groundtruth.tif")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]  # set per server, so a test can count what was fetched

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        super().do_GET()


@dataclass
class Server:
    folder: Path
    url: str
    requests: list[str]


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[Server]:
    """An HTTP server for ``folder`` on 127.0.0.1 (ephemeral port), shut down on exit."""
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(folder, f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "served"
    folder.mkdir()
    with serving(folder) as server:
        yield server


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fake_lucchi(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in LUCCHI_NAMES:
        if "groundtruth" in name:
            data = (rng.random((4, 16, 20)) > 0.9).astype(np.uint8) * 255
        else:
            data = rng.integers(0, 256, size=(4, 16, 20), dtype=np.uint8)
        tifffile.imwrite(folder / name, data, photometric="minisblack")


def _archive(source: Path, archive: Path) -> Path:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(source.rglob("*")):
                zf.write(path, path.relative_to(source.parent).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(source, arcname=source.name)
    return archive


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.mark.parametrize("name", ["lucchi.zip", "lucchi.tar.gz"])
def test_download_verify_extract(tmp_path: Path, served: Server, name: str) -> None:
    folder, url = served.folder, served.url
    _fake_lucchi(tmp_path / "src" / "Lucchi")
    archive = _archive(tmp_path / "src" / "Lucchi", folder / name)
    seen = []
    path = download(f"{url}/{name}", tmp_path / "out" / name, _sha(archive),
                    progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == archive.read_bytes()
    assert seen[-1] == (archive.stat().st_size, archive.stat().st_size)
    assert not list((tmp_path / "out").glob(".*part"))
    written = safe_extract(path, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(LUCCHI_NAMES)
    files = lucchi_files(tmp_path / "out" / "Lucchi")
    image = open_tif_volume(files["train"][0])
    assert isinstance(image, np.memmap) and image.shape == (4, 16, 20)
    assert read_labels(files["test"][1]).dtype == bool
    # Running it all again changes nothing and downloads nothing.
    assert served.requests == [f"/{name}"]
    assert download(f"{url}/{name}", path, _sha(archive)) == path
    assert served.requests == [f"/{name}"]
    assert sorted(p.name for p in safe_extract(path, tmp_path / "out")) == sorted(LUCCHI_NAMES)


def test_wrong_checksum_is_refused_and_nothing_left(tmp_path: Path,
                                                    served: Server) -> None:
    folder, url = served.folder, served.url
    (folder / "data.bin").write_bytes(b"abc" * 1000)
    wrong = "0" * 64
    with pytest.raises(InputError) as caught:
        download(f"{url}/data.bin", tmp_path / "out" / "data.bin", wrong)
    assert wrong in str(caught.value) and _sha(folder / "data.bin") in str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []  # no file, no partial file


def test_unknown_checksum_needs_an_explicit_choice(tmp_path: Path, served: Server,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    folder, url = served.folder, served.url
    (folder / "data.bin").write_bytes(b"payload")
    with pytest.raises(InputError, match="--sha256.*--allow-unverified"):
        download(f"{url}/data.bin", tmp_path / "data.bin")
    assert not (tmp_path / "data.bin").exists()
    with caplog.at_level(logging.WARNING, logger="mitoseg.data.download"):
        download(f"{url}/data.bin", tmp_path / "data.bin", allow_unverified=True)
    assert (tmp_path / "data.bin").read_bytes() == b"payload"
    assert _sha(folder / "data.bin") in caplog.text  # the digest is logged for the record


def test_existing_different_file_is_never_overwritten(tmp_path: Path,
                                                      served: Server) -> None:
    folder, url = served.folder, served.url
    (folder / "data.bin").write_bytes(b"new content")
    (tmp_path / "data.bin").write_bytes(b"old content")
    with pytest.raises(InputError, match="already exists.*not overwritten"):
        download(f"{url}/data.bin", tmp_path / "data.bin", _sha(folder / "data.bin"))
    with pytest.raises(InputError, match="already exists and differs"):
        download(f"{url}/data.bin", tmp_path / "data.bin", allow_unverified=True)
    assert (tmp_path / "data.bin").read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "served"]
    (tmp_path / "data.bin").write_bytes(b"new content")  # identical: accepted as it is
    download(f"{url}/data.bin", tmp_path / "data.bin", allow_unverified=True)


def test_bad_arguments_and_http_errors(tmp_path: Path, served: Server) -> None:
    url = served.url
    with pytest.raises(InputError, match="sha256.*64 hexadecimal"):
        download(f"{url}/x", tmp_path / "x", "abc")
    with pytest.raises(InputError, match="http"):
        download("file:///etc/hostname", tmp_path / "x", allow_unverified=True)
    with pytest.raises(InputError, match=r"missing\.bin.*404"):
        download(f"{url}/missing.bin", tmp_path / "missing.bin", allow_unverified=True)
    assert list(tmp_path.glob("*.bin")) == [] and not list(tmp_path.glob(".*part"))


def _zip_with(archive: Path, name: str, data: bytes = b"evil", symlink: bool = False) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/fine.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, data)
    return archive


def _tar_with(archive: Path, name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
              extra: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        fine = tarfile.TarInfo("ok/fine.txt")
        fine.size = 4
        tf.addfile(fine, io.BytesIO(b"fine"))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        if kind == tarfile.REGTYPE:
            info.size = 4
        tf.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
        if extra is not None:  # a file written through the link
            through = tarfile.TarInfo(extra)
            through.size = 4
            tf.addfile(through, io.BytesIO(b"evil"))
    return archive


EVIL = {
    "zip ..": lambda a, out: _zip_with(a.with_suffix(".zip"), "../evil.txt"),
    "zip ../ nested": lambda a, out: _zip_with(a.with_suffix(".zip"), "ok/../../evil.txt"),
    "zip absolute": lambda a, out: _zip_with(a.with_suffix(".zip"), f"{out}/evil.txt"),
    "zip backslash ..": lambda a, out: _zip_with(a.with_suffix(".zip"), "..\\evil.txt"),
    "zip symlink out": lambda a, out: _zip_with(a.with_suffix(".zip"), "link", b"../..",
                                                symlink=True),
    "tar ..": lambda a, out: _tar_with(a.with_suffix(".tar.gz"), "../evil.txt"),
    "tar absolute": lambda a, out: _tar_with(a.with_suffix(".tar.gz"), f"{out}/evil.txt"),
    "tar symlink out": lambda a, out: _tar_with(a.with_suffix(".tar.gz"), "link", tarfile.SYMTYPE,
                                                "../", extra="link/evil.txt"),
    "tar symlink absolute": lambda a, out: _tar_with(a.with_suffix(".tar.gz"), "link",
                                                     tarfile.SYMTYPE, str(out),
                                                     extra="link/evil.txt"),
    "tar hardlink out": lambda a, out: _tar_with(a.with_suffix(".tar.gz"), "hard",
                                                 tarfile.LNKTYPE, "../evil.txt"),
    "tar device": lambda a, out: _tar_with(a.with_suffix(".tar.gz"), "dev", tarfile.CHRTYPE),
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_escaping_members_are_refused(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    target = outside / "target"
    target.mkdir(parents=True)
    archive = EVIL[case](tmp_path / "evil", outside)
    before = _tree(tmp_path)
    with pytest.raises(InputError, match=r"refused"):
        safe_extract(archive, target)
    assert _tree(tmp_path) == before  # not even the harmless member: checks come first
    assert not (outside / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_links_inside_the_archive_are_kept(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = tarfile.TarInfo("d/data.txt")
        data.size = 4
        tf.addfile(data, io.BytesIO(b"data"))
        for name, kind, link in (("d/alias.txt", tarfile.SYMTYPE, "data.txt"),
                                 ("d/copy.txt", tarfile.LNKTYPE, "d/data.txt")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tf.addfile(info)
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/d/alias.txt").is_symlink()
    assert (tmp_path / "out/d/alias.txt").read_bytes() == b"data"
    assert (tmp_path / "out/d/copy.txt").read_bytes() == b"data"
    (tmp_path / "out/d/copy.txt").write_bytes(b"changed")
    with pytest.raises(InputError, match="copy.txt.*not overwritten"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/d/copy.txt").read_bytes() == b"changed"
    with pytest.raises(InputError, match=r"\.zip, \.tar"):
        safe_extract(tmp_path / "out/d/data.txt", tmp_path / "out")


def test_registry_invents_no_checksums() -> None:
    for name, entry in DATASETS.items():
        assert entry["page"].startswith("https://")
        for file in entry["files"]:
            digest = file["sha256"]
            assert digest is None or (len(digest) == 64 and int(digest, 16) >= 0), name
    assert all(f["sha256"] is None for f in DATASETS["lucchi"]["files"])  # none published
    assert [f["url"].rsplit("/", 1)[1] for f in DATASETS["lucchi"]["files"]] == list(LUCCHI_NAMES)


def test_cli_downloads_a_mirror_and_refuses_unverified(
        tmp_path: Path, served: Server, capsys: pytest.CaptureFixture) -> None:
    folder, url = served.folder, served.url
    _fake_lucchi(tmp_path / "src" / "Lucchi++")
    archive = _archive(tmp_path / "src" / "Lucchi++", folder / "lucchi_pp.zip")
    out = tmp_path / "data"
    assert main(["lucchi++", str(out), "--url", f"{url}/lucchi_pp.zip",
                 "--sha256", _sha(archive)]) == 0
    assert (out / "Lucchi++" / "training.tif").is_file()
    assert main(["lucchi", str(tmp_path / "l")]) == 2  # no checksum known, no flag: refused
    assert "--allow-unverified" in capsys.readouterr().err
    assert not (tmp_path / "l").exists() or not any((tmp_path / "l").iterdir())
    with pytest.raises(InputError, match="NAME=HEX"):
        fetch_dataset("lucchi", tmp_path / "l", sha256=["0" * 64])
    with pytest.raises(InputError, match="dataset.*'nope'"):
        fetch_dataset("nope", tmp_path / "l")


def test_server_is_shut_down_after_use(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
