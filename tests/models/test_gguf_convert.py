"""GGUF conversion without a real model: what a failed or refused conversion leaves behind."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from arpo.models.gguf_convert import MANIFEST, convert_gguf, is_converted, source_fingerprint

pytest.importorskip("gguf", reason="GGUF conversion needs the gguf package: pip install gguf")


@pytest.fixture
def not_gguf(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"this is not a GGUF file")
    return path


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.gguf does not exist"):
        convert_gguf(tmp_path / "nowhere.gguf", tmp_path / "out")


def test_a_failed_conversion_leaves_no_folder_and_no_temporary_files(not_gguf, tmp_path):
    out = tmp_path / "models" / "broken"
    leftover = out.parent / f".{out.name}.abc123.tmp"  # what a killed conversion would leave
    leftover.mkdir(parents=True)
    with pytest.raises(ValueError, match="GGUF"):
        convert_gguf(not_gguf, out)
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == [f".{out.name}.lock"]


def test_a_failed_forced_conversion_keeps_the_previous_one(not_gguf, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / MANIFEST).write_text('{"source": {"size": 1, "sha256": "0"}, "transformers": "0"}\n')
    with pytest.raises(ValueError, match="GGUF"):
        convert_gguf(not_gguf, out, force=True)
    assert [p.name for p in out.iterdir()] == [MANIFEST]


def test_a_folder_arpo_did_not_write_is_never_replaced(not_gguf, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a conversion written by arpo"):
        convert_gguf(not_gguf, out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_conversion_counts_only_for_the_same_bytes_and_transformers_major_version(not_gguf, tmp_path):
    fingerprint = source_fingerprint(not_gguf)
    manifest = {"source": fingerprint, "transformers": importlib.metadata.version("transformers")}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    assert is_converted(tmp_path, fingerprint)
    assert not is_converted(tmp_path, {**fingerprint, "sha256": "0" * 64})
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "transformers": "1.0.0"}))
    assert not is_converted(tmp_path, fingerprint)
    assert not is_converted(tmp_path / "absent", fingerprint)


def test_an_empty_output_folder_may_be_used(not_gguf, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with pytest.raises(ValueError, match="GGUF"):  # gets past the check, fails on the file itself
        convert_gguf(not_gguf, out)
    assert out.is_dir() and not any(out.iterdir())
