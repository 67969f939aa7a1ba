"""Downloading the EM data sets, verified by SHA-256, and extracting archives safely.

``python -m mitoseg.data.download <dataset> <folder> [--url URL --sha256 HEX]
[--allow-unverified]`` downloads a data set of ``DATASETS`` into ``folder`` (and extracts it
where it is an archive); the readers in ``mitoseg.data.em_volumes`` take it from there.

Why a checksum is required: a download that was truncated, swapped on the server or
intercepted (``casser.io`` serves plain http) would otherwise go silently into training and
evaluation. Where no checksum is published, none is invented here (``sha256: None``); the user
then gives one (``--sha256``) or says explicitly that an unverified file is acceptable
(``--allow-unverified`` / ``allow_unverified=True``), and the digest of what arrived is logged so
it can be recorded.

Checksums in ``DATASETS`` (from ``mitoseg.data.em_datasets``) are copied from other projects,
not computed here (these machines have no internet): Lucchi++ from torch-em (``torch_em/data/datasets/electron_microscopy/lucchi.py``)
and micro-sam (``micro_sam/sample_data.py``), which agree; Kasthuri++ from torch-em
(``kasthuri.py``). The official Lucchi files have no published checksum.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from mitoseg.console import console_logging, emit
from mitoseg.data import em_datasets
from mitoseg.errors import InputError

log = logging.getLogger(__name__)

# the catalogue: each data set's page, description and files (URL, SHA-256) come from its module
# in mitoseg.data.em_datasets
DATASETS: dict[str, dict] = {
    key: {"page": module.PAGE, "description": module.DESCRIPTION,
          "files": [dict(entry) for entry in module.FILES]}
    for key, module in em_datasets.BY_KEY.items()}

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(sha256: str | None, option: str = "sha256") -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _HEX64.match(sha256):
        raise InputError(f"{option}: expected 64 hexadecimal characters (a SHA-256 digest), "
                         f"got {sha256!r}")
    return sha256.lower()


def download(url: str, destination: str | Path, sha256: str | None = None, *,
             allow_unverified: bool = False, timeout: float = 60.0,
             chunk_size: int = 1 << 20,
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to the file ``destination``, verified against ``sha256``.

    The data is streamed to a temporary file next to ``destination`` and moved into place only
    once complete and verified; on any failure the partial file is removed. An existing
    ``destination`` is kept: if it matches (the checksum, or the downloaded bytes when there is
    no checksum) nothing changes, otherwise InputError; it is never overwritten. Without
    ``sha256``, ``allow_unverified=True`` is required (see the module docstring).
    ``progress(bytes_done, bytes_total_or_None)`` is called after each chunk.
    """
    sha256 = _check_sha256(sha256)
    destination = Path(destination)
    if sha256 is None and not allow_unverified:
        raise InputError(f"download of '{url}': no SHA-256 checksum is known; give one "
                         "(--sha256 / sha256=...) or accept an unverified file explicitly "
                         "(--allow-unverified / allow_unverified=True)")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InputError(f"download url: expected an http(s) address, got {url!r}")
    if destination.is_dir():
        raise InputError(f"download destination '{destination}' is a folder; expected a file "
                         "path")
    if destination.exists() and sha256 is not None:
        found = sha256_of(destination)
        if found == sha256:
            log.info("'%s' is already there and verified; not downloaded again", destination)
            return destination
        raise InputError(f"'{destination}' already exists with SHA-256 {found}, not the "
                         f"expected {sha256}; it is not overwritten. Move it away and retry.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                        suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _stream(url, out, timeout, chunk_size, progress)
        if sha256 is not None and digest != sha256:
            raise InputError(f"download of '{url}': SHA-256 mismatch: expected {sha256}, got "
                             f"{digest}; the downloaded file was removed")
        if sha256 is None:
            log.warning("'%s' downloaded WITHOUT verification; its SHA-256 is %s (record it "
                        "and pass it as --sha256 next time)", destination.name, digest)
        _move_no_overwrite(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def _stream(url: str, out, timeout: float, chunk_size: int,
            progress: Callable[[int, int | None], None] | None) -> str:
    digest = hashlib.sha256()
    done = 0
    request = urllib.request.Request(url, headers={"User-Agent": "mitoseg-download"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            for chunk in iter(lambda: response.read(chunk_size), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as error:
        raise InputError(f"download of '{url}' failed: {error}") from error
    if total is not None and done != total:
        raise InputError(f"download of '{url}' incomplete: {done} of {total} bytes")
    return digest.hexdigest()


def _move_no_overwrite(tmp: Path, destination: Path) -> None:
    """Put ``tmp`` at ``destination`` unless a different file is already there."""
    try:
        os.link(tmp, destination)  # atomic, and fails if destination exists
        return
    except FileExistsError:
        pass
    except OSError:  # file system without hard links
        if not destination.exists():
            os.replace(tmp, destination)
            return
    if _same_bytes(tmp, destination):
        log.info("'%s' is already there with the same content", destination)
        return
    raise InputError(f"'{destination}' already exists and differs from the download "
                     f"(SHA-256 {sha256_of(destination)} there, {sha256_of(tmp)} downloaded); "
                     "it is not overwritten. Move it away and retry.")


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256_of(a) == sha256_of(b)


def _member_parts(name: str, archive: Path, what: str = "member") -> tuple[str, ...]:
    """The path parts of a member name, refusing absolute paths and '..' anywhere."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        raise InputError(f"archive '{archive}': {what} '{name}' has an absolute path; refused "
                         "(it would be written outside the target folder)")
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if ".." in parts:
        raise InputError(f"archive '{archive}': {what} '{name}' contains '..'; refused (it "
                         "could be written outside the target folder)")
    return parts


def _check_link(name: str, link_target: str, archive: Path, kind: str) -> None:
    # Only links that point down from their own folder: with no '..' and no absolute path in
    # any member or link, nothing can resolve outside the target, even through other links.
    unified = link_target.replace("\\", "/")
    if (unified.startswith("/") or re.match(r"^[A-Za-z]:", unified)
            or ".." in PurePosixPath(unified).parts or not unified.strip("/.")):
        raise InputError(f"archive '{archive}': {kind} '{name}' -> '{link_target}' points "
                         "outside its folder; refused (only links within the archive's own "
                         "folders are accepted, with no '..' or absolute target)")


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    raise InputError(f"archive '{archive}': expected one of {', '.join(_ARCHIVE_SUFFIXES)}")


def _zip_entries(archive: Path, zf: zipfile.ZipFile) -> Iterator[tuple]:
    for info in zf.infolist():
        parts = _member_parts(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "replace")
            _check_link(info.filename, target, archive, "symlink")
            yield parts, "symlink", target, info
        elif info.is_dir():
            yield parts, "dir", None, info
        else:
            yield parts, "file", None, info


def _tar_entries(archive: Path, tf: tarfile.TarFile) -> Iterator[tuple]:
    for member in tf.getmembers():
        parts = _member_parts(member.name, archive)
        if member.issym():
            _check_link(member.name, member.linkname, archive, "symlink")
            yield parts, "symlink", member.linkname, member
        elif member.islnk():
            # A hard link names another member; its data is written as a plain copy.
            _member_parts(member.linkname, archive, f"hard link '{member.name}' ->")
            yield parts, "file", None, member
        elif member.isdir():
            yield parts, "dir", None, member
        elif member.isfile():
            yield parts, "file", None, member
        else:
            raise InputError(f"archive '{archive}': member '{member.name}' is a device, FIFO "
                             "or other special file; refused")


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a .zip, .tar or .tar.gz into ``target``; returns the files written.

    Every member is checked before anything is written: absolute paths, '..' components,
    links pointing up or out, and special files are refused with InputError. Existing files
    with the same content are kept; an existing different file is refused, never overwritten.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise InputError(f"archive not found: '{archive}'")
    kind = _archive_kind(archive)
    try:
        handle = zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive)
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as error:
        raise InputError(f"archive '{archive}': cannot be opened as {kind}: {error}") from error
    with handle:
        entries = list(_zip_entries(archive, handle) if kind == "zip"
                       else _tar_entries(archive, handle))
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        written: list[Path] = []
        for parts, what, link_target, member in entries:
            if not parts:
                continue
            path = root.joinpath(*parts)
            if not path.resolve().is_relative_to(root):  # a pre-existing link in target
                raise InputError(f"archive '{archive}': member '{'/'.join(parts)}' would be "
                                 f"written outside '{target}' (through an existing link)")
            if what == "dir":
                path.mkdir(parents=True, exist_ok=True)
            elif what == "symlink":
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink() and os.readlink(path) == link_target:
                    continue
                if path.exists() or path.is_symlink():
                    raise InputError(f"extracting '{archive}': '{path}' already exists; not "
                                     "overwritten")
                path.symlink_to(link_target)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    source = (handle.open(member) if kind == "zip"
                              else handle.extractfile(member))
                except (KeyError, tarfile.TarError, zipfile.BadZipFile) as error:
                    raise InputError(f"archive '{archive}': cannot read member "
                                     f"'{'/'.join(parts)}': {error}") from error
                if source is None:
                    raise InputError(f"archive '{archive}': cannot read member "
                                     f"'{'/'.join(parts)}'")
                with source:
                    _write_new(source, path, archive)
                written.append(path)
    return written


def _write_new(source, path: Path, archive: Path) -> None:
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        try:
            _move_no_overwrite(tmp, path)
        except InputError as error:
            raise InputError(f"extracting '{archive}': {error}") from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch_dataset(dataset: str, folder: str | Path, *, url: str | None = None,
                  sha256: Sequence[str] = (), allow_unverified: bool = False,
                  timeout: float = 60.0) -> list[Path]:
    """Download (and extract) a data set of ``DATASETS``, or ``url``, into ``folder``.

    ``sha256``: one digest (for a single-file data set or ``url``) or ``NAME=HEX`` per file.
    Returns the downloaded files.
    """
    key = dataset.lower()
    if key not in DATASETS:
        raise InputError(f"dataset: expected one of {sorted(DATASETS)}, got {dataset!r}")
    entries = [dict(e) for e in DATASETS[key]["files"]]
    if url is not None:
        entries = [{"url": url, "sha256": None,
                    "extract": url.lower().split("?")[0].endswith(_ARCHIVE_SUFFIXES)}]
    names = [PurePosixPath(urllib.parse.urlsplit(e["url"]).path).name for e in entries]
    for given in sha256:
        name, _, digest = given.rpartition("=")
        if not name and len(entries) > 1:
            raise InputError(f"--sha256 {given!r}: {key} has {len(entries)} files; give "
                             f"NAME=HEX for each, names: {names}")
        index = names.index(name) if name in names else (0 if not name else None)
        if index is None:
            raise InputError(f"--sha256 {given!r}: no file named {name!r}; names: {names}")
        entries[index]["sha256"] = _check_sha256(digest, "--sha256")
    folder = Path(folder)
    fetched = []
    for entry, name in zip(entries, names):
        path = download(entry["url"], folder / name, entry["sha256"],
                        allow_unverified=allow_unverified, timeout=timeout)
        fetched.append(path)
        if entry.get("extract"):
            files = safe_extract(path, folder)
            log.info("extracted %d files from '%s' into '%s'", len(files), path, folder)
    return fetched


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mitoseg.data.download",
        description="Download an EM data set, verify its SHA-256 and extract it. Data sets: "
                    + "; ".join(f"{k}: {v['description']} ({v['page']})"
                                for k, v in DATASETS.items()))
    parser.add_argument("dataset", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("folder", help="where to put the files")
    parser.add_argument("--url", help="download this address instead (a mirror)")
    parser.add_argument("--sha256", action="append", default=[],
                        help="expected SHA-256 (HEX, or NAME=HEX per file); repeatable")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept files without a known checksum (their digest is logged)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per connection")
    args = parser.parse_args(argv)
    console_logging()
    try:
        paths = fetch_dataset(args.dataset, args.folder, url=args.url, sha256=args.sha256,
                              allow_unverified=args.allow_unverified, timeout=args.timeout)
    except InputError as error:
        log.error("mitoseg: error: %s", error)
        return 2
    for path in paths:
        emit(str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
