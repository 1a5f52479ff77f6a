"""Demonstrations for SFT in the rollout's exact protocol, from the data sets people have.

A :class:`Conversation` (prompt messages + model/tool segments) renders to token ids and a loss
mask exactly as a rollout of it would (:mod:`.conversation`); :func:`load_demonstrations` reads
OpenAI ``messages``, ShareGPT ``conversations``, ``arpo eval`` records and the project's own
demonstration rows (:mod:`.loader`, :mod:`.chat`, :mod:`.rows`), holding each to the rollout's
rules (:mod:`.response`). docs/sft.md describes the layouts with examples.
"""

from arpo.tasks.demonstrations.conversation import (
    DEFAULT_RESULT_TEMPLATE,
    Conversation,
    ResponseProtocol,
    Segment,
    conversation_example,
    conversation_tree,
)
from arpo.tasks.demonstrations.loader import (
    LAYOUTS,
    DemonstrationsConfig,
    detect_demonstration_layout,
    load_demonstrations,
)

__all__ = [
    "DEFAULT_RESULT_TEMPLATE",
    "LAYOUTS",
    "Conversation",
    "DemonstrationsConfig",
    "ResponseProtocol",
    "Segment",
    "conversation_example",
    "conversation_tree",
    "detect_demonstration_layout",
    "load_demonstrations",
]
