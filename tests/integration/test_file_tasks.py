"""File tasks on files the test creates: thumbnails, metadata, text from PDF and DOCX."""

from __future__ import annotations

import hashlib

import docx
import pytest
from PIL import Image
from reportlab.pdfgen import canvas
from workers import client_app

pytestmark = pytest.mark.integration


@pytest.fixture
def files(tmp_path):
    image = tmp_path / "photo.png"
    Image.new("RGBA", (1200, 600), (200, 30, 30, 255)).save(image)
    pdf = tmp_path / "report.pdf"
    page = canvas.Canvas(str(pdf))
    page.drawString(72, 720, "Quarterly revenue grew by twelve percent")
    page.showPage()
    page.drawString(72, 720, "Second page mentions Stalk")
    page.save()
    word = tmp_path / "memo.docx"
    document = docx.Document()
    document.add_paragraph("Memo: the autoscaler counts every priority list.")
    document.add_table(rows=1, cols=1).rows[0].cells[0].text = "cell text"
    document.save(str(word))
    return {"image": image, "pdf": pdf, "docx": word}


def test_thumbnail_keeps_aspect_ratio(workers, broker_env, files, tmp_path):
    workers.start(broker_env, queues=["file_processing"])
    with client_app(broker_env) as app:
        out = app.send_task(
            "stalk_worker.tasks.files.make_thumbnail",
            args=[str(files["image"])],
            kwargs={"output_dir": str(tmp_path / "thumbs")},
        ).get(timeout=30)
    assert (out["width"], out["height"]) == (256, 128)
    with Image.open(out["path"]) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (256, 128)
    assert not list((tmp_path / "thumbs").glob("*.part")), "no temporary file may be left"


def test_metadata_and_text_extraction(workers, broker_env, files):
    workers.start(broker_env, queues=["file_processing"])
    with client_app(broker_env) as app:
        meta = app.send_task(
            "stalk_worker.tasks.files.file_metadata", args=[str(files["image"])]
        ).get(timeout=30)
        pdf = app.send_task("stalk_worker.tasks.files.extract_text", args=[str(files["pdf"])]).get(
            timeout=30
        )
        word = app.send_task(
            "stalk_worker.tasks.files.extract_text", args=[str(files["docx"])]
        ).get(timeout=30)
        missing = app.send_task(
            "stalk_worker.tasks.files.extract_text", args=[str(files["pdf"]) + ".gone"]
        )
        with pytest.raises(Exception, match="no such file"):
            missing.get(timeout=30)
    assert meta["sha256"] == hashlib.sha256(files["image"].read_bytes()).hexdigest()
    assert (meta["width"], meta["height"], meta["image_format"]) == (1200, 600, "PNG")
    assert pdf["pages"] == 2
    assert "twelve percent" in pdf["text"] and "Stalk" in pdf["text"]
    assert "every priority list" in word["text"] and "cell text" in word["text"]


def test_batch_chord_summarizes_every_file(workers, broker_env, files, tmp_path):
    workers.start(broker_env, queues=["file_processing"], concurrency=3)
    paths = [str(p) for p in files.values()]
    with client_app(broker_env) as app:
        summary_id = app.send_task(
            "stalk_worker.tasks.files.process_batch",
            args=[paths],
            kwargs={"thumbnail_dir": str(tmp_path / "t")},
        ).get(timeout=30)
        summary = app.AsyncResult(summary_id).get(timeout=60)
    assert summary["files"] == 3
    assert summary["images"] == 1
    assert summary["bytes"] == sum(p.stat().st_size for p in files.values())
    assert summary["characters"] > 50
