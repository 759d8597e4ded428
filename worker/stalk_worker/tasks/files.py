"""File processing: thumbnails, checksums and metadata, text from PDF and DOCX, batches.

Outputs are written to a temporary name and renamed into place, so a retried or
redelivered task replaces its own output instead of leaving a half-written file.
A missing or unreadable file is a permanent error: retrying cannot create it.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import chord, shared_task
from PIL import Image, UnidentifiedImageError

from stalk_worker.taskkit import PermanentError

CHUNK = 1 << 20


def _existing(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise PermanentError(f"no such file: {path}")
    return file


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary sibling of ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@shared_task(name="stalk_worker.tasks.files.file_metadata", soft_time_limit=120, time_limit=150)
def file_metadata(path: str) -> dict[str, Any]:
    """Size, SHA-256, MIME type and, for images, dimensions and format."""
    file = _existing(path)
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    info: dict[str, Any] = {
        "path": str(file),
        "size": file.stat().st_size,
        "sha256": digest.hexdigest(),
        "mime_type": mimetypes.guess_type(file.name)[0] or "application/octet-stream",
    }
    try:
        with Image.open(file) as image:
            info.update(width=image.width, height=image.height, image_format=image.format)
    except (UnidentifiedImageError, OSError):
        pass
    return info


@shared_task(name="stalk_worker.tasks.files.make_thumbnail", soft_time_limit=60, time_limit=90)
def make_thumbnail(
    path: str, output_dir: str | None = None, max_size: int = 256, image_format: str = "JPEG"
) -> dict[str, Any]:
    """A thumbnail no larger than ``max_size`` on either side, aspect ratio kept."""
    source = _existing(path)
    if max_size < 1:
        raise PermanentError("max_size must be positive")
    suffix = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}.get(image_format.upper())
    if suffix is None:
        raise PermanentError(f"unsupported thumbnail format: {image_format}")
    target = Path(output_dir or source.parent) / f"{source.stem}.thumb{max_size}.{suffix}"
    try:
        with Image.open(source) as opened:
            opened.thumbnail((max_size, max_size))
            image: Image.Image = opened
            if image_format.upper() == "JPEG" and image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            atomic_write(target, lambda tmp: image.save(tmp, format=image_format.upper()))
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise PermanentError(f"not a usable image: {source}: {exc}") from None
    return {"path": str(target), "width": width, "height": height}


def _pdf_text(file: Path) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(file)
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise PermanentError(f"unreadable PDF {file}: {exc}") from None
    return "\n".join(pages), len(pages)


def _docx_text(file: Path) -> tuple[str, int]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(file))
    except (PackageNotFoundError, ValueError, KeyError) as exc:
        raise PermanentError(f"unreadable DOCX {file}: {exc}") from None
    paragraphs = [p.text for p in document.paragraphs]
    cells = [cell.text for table in document.tables for row in table.rows for cell in row.cells]
    return "\n".join(paragraphs + cells), 0


def _plain_text(file: Path) -> tuple[str, int]:
    return file.read_text(errors="replace"), 0


EXTRACTORS: dict[str, Callable[[Path], tuple[str, int]]] = {
    ".pdf": _pdf_text,
    ".docx": _docx_text,
    ".txt": _plain_text,
    ".md": _plain_text,
}


@shared_task(name="stalk_worker.tasks.files.extract_text", soft_time_limit=240, time_limit=270)
def extract_text(path: str) -> dict[str, Any]:
    """The text of a PDF, DOCX or plain-text file, with page and character counts."""
    file = _existing(path)
    extractor = EXTRACTORS.get(file.suffix.lower())
    if extractor is None:
        raise PermanentError(f"no text extractor for {file.suffix or 'files without suffix'}")
    text, pages = extractor(file)
    return {"path": str(file), "text": text, "pages": pages, "characters": len(text)}


@shared_task(name="stalk_worker.tasks.files.process_file", soft_time_limit=240, time_limit=270)
def process_file(path: str, thumbnail_dir: str | None = None) -> dict[str, Any]:
    """Metadata for any file, plus a thumbnail for images and text for documents."""
    info: dict[str, Any] = file_metadata(path)
    if "image_format" in info:
        info["thumbnail"] = make_thumbnail(path, output_dir=thumbnail_dir)["path"]
    if Path(path).suffix.lower() in EXTRACTORS:
        info["characters"] = extract_text(path)["characters"]
    return info


@shared_task(name="stalk_worker.tasks.files.summarize_batch", soft_time_limit=60, time_limit=90)
def summarize_batch(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The chord callback of :func:`process_batch`: totals over every file."""
    return {
        "files": len(results),
        "bytes": sum(r["size"] for r in results),
        "images": sum(1 for r in results if "thumbnail" in r),
        "characters": sum(r.get("characters", 0) for r in results),
        "sha256": {r["path"]: r["sha256"] for r in results},
    }


@shared_task(
    name="stalk_worker.tasks.files.process_batch", bind=True, soft_time_limit=30, time_limit=60
)
def process_batch(self: Any, paths: list[str], thumbnail_dir: str | None = None) -> str:
    """Process files in parallel (a chord) and summarize; returns the summary's task id."""
    if not paths:
        raise PermanentError("process_batch needs at least one path")
    header = [process_file.s(path, thumbnail_dir) for path in paths]
    return str(chord(header)(summarize_batch.s()).id)
