"""LLM-as-judge through any OpenAI-compatible chat-completions endpoint, with a strict verdict.

For benchmarks whose answers no metric can check (GAIA, HLE, WebWalker; ARPO, arXiv 2507.19849
§4.1 evaluates them with an LLM judge), a judge model reads the question, the gold answers and
the predicted answer, and must reply with exactly one word: ``CORRECT`` or ``INCORRECT``
(case-insensitive, surrounding whitespace and one trailing period allowed). Anything else is
not guessed at: the verdict is ``None`` with the reason, as are HTTP failures and timeouts, so a
flaky judge shows up as errors, never as accuracy.

Request: ``POST {base_url}/chat/completions`` with ``{"model", "messages", "temperature": 0,
"max_tokens"}``; the key is read from the environment variable ``api_key_env`` (never from a
config file) and sent as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

SYSTEM_PROMPT = (
    "You grade answers to questions. Reply with exactly one word: CORRECT if the predicted answer "
    "means the same as one of the gold answers, INCORRECT otherwise."
)
VERDICTS = {"CORRECT": True, "INCORRECT": False}


class JudgeConfig(BaseModel):
    """An OpenAI-compatible endpoint that grades answers (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1.")
    model: str = Field(description="Judge model name as the endpoint knows it.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key; null sends no key."
    )
    timeout_s: float = Field(60.0, gt=0, description="Limit per request.")
    max_tokens: int = Field(8, ge=1, description="Longest reply requested.")
    max_workers: int = Field(8, ge=1, description="Requests in flight at once.")


@dataclass(frozen=True)
class Verdict:
    correct: bool | None
    """The judge's verdict; None when the request failed or the reply was not a verdict."""
    error: str | None = None
    reply: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_verdict(reply: str) -> bool:
    """``True`` for CORRECT, ``False`` for INCORRECT; ValueError for anything else (module docstring)."""
    word = reply.strip()
    word = word[:-1] if word.endswith(".") else word
    try:
        return VERDICTS[word.upper()]
    except KeyError:
        raise ValueError(f"not a verdict (expected CORRECT or INCORRECT): {reply[:200]!r}") from None


def judge_prompt(question: str, gold: Sequence[str], answer: str) -> str:
    return f"Question: {question}\nGold answers: {' | '.join(gold)}\nPredicted answer: {answer}"


class Judge:
    """Grades answers with :class:`JudgeConfig`'s endpoint; thread-safe."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self._key = None
        if config.api_key_env is not None:
            self._key = os.environ.get(config.api_key_env)
            if not self._key:
                raise ValueError(
                    f"judge.api_key_env: the environment variable {config.api_key_env} is not set; "
                    "export it, or set judge.api_key_env=null for an endpoint without keys"
                )
        self._url = config.base_url.rstrip("/") + "/chat/completions"

    def judge(self, question: str, gold: Sequence[str], answer: str | None) -> Verdict:
        """The verdict on one answer; a missing answer (format failure) is incorrect without a request."""
        if answer is None:
            return Verdict(False, None, None)
        body = {
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": judge_prompt(question, gold, answer)},
            ],
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self._url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                payload = json.loads(response.read())
            reply = payload["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            return Verdict(None, f"judge request failed: HTTP {exc.code}")
        except (TimeoutError, urllib.error.URLError) as exc:
            if isinstance(exc, TimeoutError) or isinstance(exc.reason, TimeoutError):
                return Verdict(None, f"judge timed out (limit {self.config.timeout_s} s)")
            return Verdict(None, f"judge unreachable: {exc.reason}")
        except OSError as exc:
            return Verdict(None, f"judge connection failed: {exc}")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Verdict(None, f"judge response is not a chat completion: {exc}")
        if not isinstance(reply, str):
            return Verdict(None, "judge response has no text content")
        try:
            return Verdict(parse_verdict(reply), None, reply)
        except ValueError as exc:
            return Verdict(None, str(exc), reply)

    def judge_many(self, items: Sequence[tuple[str, Sequence[str], str | None]]) -> list[Verdict]:
        """Verdicts for ``(question, gold answers, answer)`` items, in order, requests in parallel."""
        with ThreadPoolExecutor(self.config.max_workers) as pool:
            return list(pool.map(lambda item: self.judge(*item), items))
