"""The rollout tree: the one record of what was generated for a prompt (DESIGN.md §3).

ARPO (arXiv 2507.19849, §3.1) samples a *tree* per prompt: a few full trajectories, plus branches
that fork right after tool results. Here a tree is made of nodes, each a segment of tokens:

* the root holds the prompt (role ``prompt``, rendered once with the chat template);
* ``model`` nodes hold sampled tokens with their sampling log-probs and exact entropies;
* ``tool`` nodes hold a tool result (already wrapped in result tags and encoded on its own) and
  the call that produced it, plus the branching decision taken at that point.

A trajectory is a root-to-leaf path; a tree with M leaves is a group of M trajectories. Everything
else is *derived* from the nodes and never stored beside them: a trajectory's token ids (the
concatenation of its segments, token-in/token-out), its loss mask (1 on model tokens, 0 on prompt
and tool tokens), how many leaves share a node, tool-call counts and the response length.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Role(str, Enum):
    PROMPT = "prompt"
    MODEL = "model"
    TOOL = "tool"


class Origin(str, Enum):
    """How a path started: its first model node records it; continuation nodes have none."""

    INITIAL = "initial"
    """One of the N initial full samples."""
    BRANCH = "branch"
    """A copy forked right after a tool result (entropy-gated)."""
    FILL = "fill"
    """A fresh full sample started because all paths ended before the tree had M leaves."""


class FinishReason(str, Enum):
    """Why a path ended; stored on its leaf."""

    ANSWER = "answer"
    """The model wrote the answer's closing tag (e.g. ``</answer>``)."""
    EOS = "eos"
    """The model emitted an end-of-sequence token."""
    LENGTH = "length"
    """The response token budget was used up."""


@dataclass
class ToolCall:
    """The call behind a tool node. ``status`` is a :class:`arpo.tools.ToolStatus` value."""

    tag: str
    call: str
    status: str
    latency_s: float = 0.0
    truncated: bool = False
    executed: bool = True
    """Whether the call reached the tool box (which ran it, or the tool refused it there: a
    ``limit`` for code too long is executed); False when the rollout refused it before any tool
    saw it — over ``max_tool_calls``, or malformed (a closing tag without its opening tag)."""


@dataclass
class BranchDecision:
    """ARPO's branching decision at a tool result (see :mod:`arpo.core.branching`)."""

    h_init: float
    """Mean normalised entropy of the first k tokens of the trajectory."""
    h_after: float
    """Mean normalised entropy of the first k tokens generated after this tool result."""
    score: float
    """(α + β·(h_after − h_init))·max(0, 1 − γ_p·streak); γ_p = 0 without AEPO's penalty."""
    branch: bool
    """The rule's outcome."""
    copies: int
    """Copies forked here: Z when ``branch``, fewer when the prompt was close to its M paths."""
    streak: int = 0
    """l: branchings just before this tool result on the path (AEPO's consecutive penalty)."""

    @property
    def delta(self) -> float:
        return self.h_after - self.h_init


@dataclass(eq=False)
class Node:
    """One segment of tokens. Model nodes grow while their path generates."""

    id: int
    role: Role
    parent: Node | None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    children: list[Node] = field(default_factory=list, repr=False)
    origin: Origin | None = None
    finish_reason: FinishReason | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The calls behind a tool node: one in the tag protocol; a native chat turn may make several,
    whose results share one node (rendered together by the chat template)."""
    decision: BranchDecision | None = None

    def path(self) -> list[Node]:
        """Nodes from the root down to this node."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def append(self, token_ids: list[int], logprobs: list[float], entropies: list[float]) -> None:
        """Add sampled tokens to a model node."""
        if self.role is not Role.MODEL:
            raise ValueError(f"node {self.id} is a {self.role.value} node; only model nodes grow")
        if not len(token_ids) == len(logprobs) == len(entropies):
            raise ValueError("token_ids, logprobs and entropies must have the same length")
        self.token_ids.extend(token_ids)
        self.logprobs.extend(logprobs)
        self.entropies.extend(entropies)


@dataclass(frozen=True)
class Trajectory:
    """A root-to-leaf path, viewed as one training sequence. All fields are derived."""

    nodes: tuple[Node, ...]

    @property
    def leaf(self) -> Node:
        return self.nodes[-1]

    @property
    def token_ids(self) -> list[int]:
        """Prompt and response token ids: exactly the concatenation of the segments."""
        return [t for node in self.nodes for t in node.token_ids]

    @property
    def loss_mask(self) -> list[int]:
        """1 on model-sampled tokens, 0 on prompt and tool-result tokens."""
        return [int(node.role is Role.MODEL) for node in self.nodes for _ in node.token_ids]

    @property
    def sampled_logprobs(self) -> list[float]:
        """Sampling-time log-probs aligned with :attr:`token_ids` (0.0 where the mask is 0)."""
        return [lp for node in self.nodes for lp in (node.logprobs or [0.0] * len(node.token_ids))]

    @property
    def prompt_length(self) -> int:
        return len(self.nodes[0].token_ids)

    @property
    def response_length(self) -> int:
        """Tokens after the prompt (model and tool tokens): what the response budget counts."""
        return sum(len(node.token_ids) for node in self.nodes[1:])

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [call for node in self.nodes for call in node.tool_calls]

    @property
    def origin(self) -> Origin | None:
        """How this path started: the deepest origin on it (a branch's path runs through the
        initial sample it forked from, so the branch's own origin is the deeper one)."""
        return next((node.origin for node in reversed(self.nodes) if node.origin is not None), None)

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.leaf.finish_reason


class RolloutTree:
    """The tree of trajectories sampled for one prompt."""

    def __init__(self, prompt_ids: list[int], vocab_size: int, meta: dict[str, Any] | None = None) -> None:
        if not prompt_ids:
            raise ValueError("a rollout tree needs a non-empty prompt")
        self.vocab_size = vocab_size
        self.meta: dict[str, Any] = dict(meta or {})
        self.nodes: list[Node] = []
        self.root = self._add(Role.PROMPT, None, token_ids=list(prompt_ids))

    def _add(self, role: Role, parent: Node | None, **fields: Any) -> Node:
        node = Node(id=len(self.nodes), role=role, parent=parent, **fields)
        self.nodes.append(node)
        if parent is not None:
            parent.children.append(node)
        return node

    def add_model(self, parent: Node, origin: Origin | None = None) -> Node:
        """Start an (empty) model segment under ``parent``."""
        if parent.role is Role.MODEL:
            raise ValueError("a model segment follows the prompt or a tool result, not another model segment")
        return self._add(Role.MODEL, parent, origin=origin)

    def add_tool(self, parent: Node, token_ids: list[int], tool_calls: Sequence[ToolCall]) -> Node:
        """Append tool results (already wrapped and encoded) after the model segment that made the calls."""
        if parent.role is not Role.MODEL:
            raise ValueError("a tool result follows a model segment")
        if not tool_calls:
            raise ValueError("a tool node records at least one call")
        return self._add(Role.TOOL, parent, token_ids=list(token_ids), tool_calls=list(tool_calls))

    def adopt(self, other: RolloutTree, child: Node) -> None:
        """Move ``child`` — a segment under the root of ``other``, a tree of the same prompt — and its
        descendants under this tree's root, after this tree's nodes, in ``other``'s node order; the
        moved nodes get this tree's next ids. (A speculative fill is sampled in a tree of its own
        until the rollout knows it is kept: :mod:`arpo.rollout`.)"""
        if child.parent is not other.root:
            raise ValueError("only a segment directly under the other tree's root can be adopted")
        if other.root.token_ids != self.root.token_ids:
            raise ValueError("a segment can be adopted only from a tree of the same prompt")
        below = {id(n) for n in other.walk() if any(a is child for a in n.path())}
        moved = [n for n in other.nodes if id(n) in below]
        other.nodes = [n for n in other.nodes if id(n) not in below]
        other.root.children.remove(child)
        child.parent = self.root
        self.root.children.append(child)
        for node in moved:
            node.id = len(self.nodes)
            self.nodes.append(node)

    # ----- derived views -------------------------------------------------------------------
    def leaves(self) -> list[Node]:
        return [node for node in self.nodes if not node.children and node is not self.root]

    def trajectories(self) -> list[Trajectory]:
        return [Trajectory(tuple(leaf.path())) for leaf in self.leaves()]

    def leaf_counts(self) -> dict[int, int]:
        """Node id → number of leaves (trajectories) that share the node."""
        counts = {node.id: 0 for node in self.nodes}
        for leaf in self.leaves():
            for node in leaf.path():
                counts[node.id] += 1
        return counts

    def walk(self) -> Iterator[Node]:
        """Nodes in depth-first order (parents before children, children in creation order)."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    # ----- serialisation -------------------------------------------------------------------
    def to_dict(self, decode: Callable[[list[int]], str] | None = None) -> dict[str, Any]:
        """JSON-ready dict; with ``decode``, each node also carries its text (for reading only)."""
        nodes = []
        for node in self.nodes:
            item: dict[str, Any] = {
                "id": node.id,
                "role": node.role.value,
                "parent": None if node.parent is None else node.parent.id,
                "token_ids": node.token_ids,
            }
            if node.role is Role.MODEL:
                item["logprobs"] = node.logprobs
                item["entropies"] = node.entropies
            for name in ("origin", "finish_reason"):
                value = getattr(node, name)
                if value is not None:
                    item[name] = value.value
            if node.tool_calls:
                item["tool_calls"] = [asdict(call) for call in node.tool_calls]
            if node.decision is not None:
                item["decision"] = asdict(node.decision)
            if decode is not None:
                item["text"] = decode(node.token_ids)
            nodes.append(item)
        return {"vocab_size": self.vocab_size, "meta": self.meta, "nodes": nodes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutTree:
        items = data["nodes"]
        if not items or items[0]["role"] != Role.PROMPT.value:
            raise ValueError("a serialised tree must start with its prompt node")
        tree = cls(items[0]["token_ids"], data["vocab_size"], data.get("meta"))
        for item in items[1:]:
            parent = tree.nodes[item["parent"]]
            tree._add(
                Role(item["role"]),
                parent,
                token_ids=list(item["token_ids"]),
                logprobs=list(item.get("logprobs", [])),
                entropies=list(item.get("entropies", [])),
                origin=Origin(item["origin"]) if "origin" in item else None,
                finish_reason=FinishReason(item["finish_reason"]) if "finish_reason" in item else None,
                tool_calls=[  # "tool_call": one call, as trees were written before several per node
                    ToolCall(**call)
                    for call in item.get("tool_calls", [item["tool_call"]] if "tool_call" in item else [])
                ],
                decision=BranchDecision(**item["decision"]) if "decision" in item else None,
            )
        return tree

    def to_json(self, decode: Callable[[list[int]], str] | None = None) -> str:
        return json.dumps(self.to_dict(decode))
