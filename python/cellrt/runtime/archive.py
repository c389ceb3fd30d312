"""A model as one file: a zip archive of its folder (``cellrt.json`` and the ONNX files it names).

``pack_model`` checks the folder (manifest and hashes) before writing the
archive atomically. ``unpack_model`` extracts an archive once into the model
cache (``$CELLRT_CACHE/models`` or ``~/.cache/cellrt/models``), in a folder
named by the archive's SHA-256, so the same archive is never extracted twice
and a changed one never reuses a stale folder; the extracted manifest is
then verified like any model folder (every ONNX file against its SHA-256).
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .._atomic import atomic_path
from .manifest import MANIFEST_NAME, ManifestError, cache_root, load_manifest, sha256_file

ARCHIVE_SUFFIXES = (".zip",)


def models_cache_dir() -> Path:
    return cache_root() / "models"


def is_model_archive(path) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix.lower() in ARCHIVE_SUFFIXES


def pack_model(folder, archive) -> Path:
    """Write ``archive`` (.zip) holding the model folder's manifest and the ONNX files it names."""
    folder, archive = Path(folder), Path(archive)
    if archive.suffix.lower() not in ARCHIVE_SUFFIXES:
        raise ValueError(f"pack_model: {archive} should end in {' or '.join(ARCHIVE_SUFFIXES)}")
    manifest = load_manifest(folder)   # refuses a folder whose files do not match their hashes
    files = [MANIFEST_NAME, manifest.onnx_file] + [section["file"] for section in (manifest.fp16, manifest.int8)
                                                   if section]
    with atomic_path(archive) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in files:
                zf.write(folder / name, arcname=name)
    return archive


def unpack_model(archive, cache: Path | None = None) -> Path:
    """The folder an archive extracts to (extracting it the first time); errors name the archive."""
    archive = Path(archive)
    try:
        digest = sha256_file(archive)
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            _check_members(archive, names)
            target = (cache or models_cache_dir()) / digest[:16]
            if (target / MANIFEST_NAME).is_file():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                zf.extractall(staging)
                try:
                    staging.rename(target)
                except OSError:   # another process extracted the same archive first: keep theirs
                    if not (target / MANIFEST_NAME).is_file():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except zipfile.BadZipFile as error:
        raise ManifestError(f"{archive}: not a readable zip archive: {error}") from error
    return target


def _check_members(archive: Path, names: list[str]) -> None:
    if MANIFEST_NAME not in names:
        raise ManifestError(f"{archive}: no {MANIFEST_NAME} at the top of the archive (has {names[:5]}); "
                            f"make model archives with `cellrt pack`")
    for name in names:
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise ManifestError(f"{archive}: member {name!r} would extract outside the model folder; refused")
