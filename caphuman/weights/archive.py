"""Zip archives from outside (model packs, the FLAME release): read them without trusting them.

Every member name is checked before anything is written: absolute paths, ``..`` parts, drive
letters and symbolic links are refused, and so is an archive whose members would unpack beyond
a byte budget or a ratio over the archive's own size (a zip bomb). So are members this reader
cannot unpack: encrypted ones (any encryption flag), compression methods other than stored,
deflate, bzip2 and LZMA (e.g. deflate64, method 9), and patched data. Members are written with
their declared size enforced, so a lying header cannot overfill the disk either.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from caphuman.errors import InputError

#: Defaults: at most this many bytes unpacked, and at most this ratio over the packed size.
MAX_UNPACKED_BYTES = 4 << 30
MAX_UNPACK_RATIO = 200
#: A single member larger than this must not exceed MAX_UNPACK_RATIO over its compressed size.
RATIO_CHECK_BYTES = 16 << 20
#: Compression methods Python's zipfile unpacks (the others raise NotImplementedError mid-read).
SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                     zipfile.ZIP_LZMA: "LZMA"}
_METHOD_NAMES = {9: "deflate64", 6: "implode", 1: "shrink", 93: "zstandard", 95: "xz", 98: "PPMd", 99: "AES"}
#: General-purpose flag bits: 0x1 encrypted, 0x40 strong encryption, 0x2000 encrypted central directory;
#: 0x20 compressed patched data.
_ENCRYPTED_FLAGS = 0x1 | 0x40 | 0x2000
_PATCHED_FLAG = 0x20


def _check_readable(info: zipfile.ZipInfo, name: str) -> None:
    """Refuse a member zipfile would fail on half-way (encrypted, unsupported method, patched)."""
    if info.flag_bits & _ENCRYPTED_FLAGS:
        raise ArchiveError(f"{name}: member {info.filename!r} is encrypted (password-protected): not supported; "
                           "use the archive as published, unencrypted")
    if info.compress_type not in SUPPORTED_METHODS:
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise ArchiveError(f"{name}: member {info.filename!r} is compressed with {method} (method "
                           f"{info.compress_type}), which cannot be unpacked here; re-pack it with ordinary "
                           "deflate (e.g. `zip -r`)")
    if info.flag_bits & _PATCHED_FLAG:
        raise ArchiveError(f"{name}: member {info.filename!r} holds patched data (an old PKWARE extension): "
                           "not supported; re-pack it with ordinary deflate")


class ArchiveError(InputError):
    """An archive that cannot be read safely (corrupt, traversal, bomb, link)."""


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """Open ``path`` as a zip, or raise :class:`ArchiveError` (truncated, not a zip, unreadable)."""
    path = Path(path)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"{path.name} is not a readable zip archive ({exc}); download it again") from None


def checked_members(zf: zipfile.ZipFile, name: str, max_bytes: int = MAX_UNPACKED_BYTES,
                    packed_size: int | None = None) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """The archive's file members with their path parts, after the checks of the module docstring."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    total = sum(i.file_size for i in infos)
    packed = packed_size if packed_size is not None else max(sum(i.compress_size for i in infos), 1)
    if total > max_bytes or total > MAX_UNPACK_RATIO * max(packed, 1):
        raise ArchiveError(f"{name} would unpack to {total:,} bytes from {packed:,}: refused (zip bomb?)")
    members = []
    for info in infos:
        if info.file_size > RATIO_CHECK_BYTES and info.file_size > MAX_UNPACK_RATIO * max(info.compress_size, 1):
            raise ArchiveError(f"{name}: member {info.filename!r} would unpack to {info.file_size:,} bytes from "
                               f"{info.compress_size:,}: refused (zip bomb?)")
        raw = info.filename.replace("\\", "/")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if raw.startswith("/") or ".." in parts or not parts or ":" in parts[0]:
            raise ArchiveError(f"{name}: member {info.filename!r} points outside the folder: refused")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ArchiveError(f"{name}: member {info.filename!r} is a symbolic link: refused")
        _check_readable(info, name)
        members.append((info, parts))
    return members


def extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path, name: str) -> Path:
    """Write one member to ``out`` reading at most its declared size (+1 byte to detect a lie)."""
    _check_readable(info, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(info) as src, open(out, "wb") as dst:
            remaining = info.file_size + 1
            while remaining > 0:
                block = src.read(min(1 << 20, remaining))
                if not block:
                    break
                dst.write(block)
                remaining -= len(block)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError,
            MemoryError) as exc:  # CRC errors are BadZipFile; a lying header can surface as any of these
        out.unlink(missing_ok=True)
        raise ArchiveError(f"{name}: member {info.filename!r} is corrupt ({type(exc).__name__}: "
                           f"{str(exc)[:160]}); download it again") from None
    if out.stat().st_size != info.file_size:
        out.unlink(missing_ok=True)
        raise ArchiveError(f"{name}: member {info.filename!r} is corrupt (size differs from its header)")
    return out


def safe_extract_zip(archive: str | Path, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> list[Path]:
    """Unpack every member of ``archive`` into ``dest`` (a single top-level folder is flattened)."""
    archive = Path(archive)
    with open_zip(archive) as zf:
        members = checked_members(zf, archive.name, max_bytes, archive.stat().st_size)
        names = [parts for _, parts in members]
        strip = 1 if names and len({p[0] for p in names}) == 1 and all(len(p) > 1 for p in names) else 0
        dest.mkdir(parents=True, exist_ok=True)
        return [extract_member(zf, info, dest.joinpath(*parts[strip:]), archive.name) for info, parts in members]


__all__ = ["ArchiveError", "open_zip", "checked_members", "extract_member", "safe_extract_zip"]
