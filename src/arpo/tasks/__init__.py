"""Tasks and data sets: the task record, dataset loaders and the tool-protocol system prompt."""

from arpo.tasks.errors import TaskLoadError
from arpo.tasks.layouts import BUILTIN_LAYOUTS, FieldMap
from arpo.tasks.loaders import DatasetConfig, load_tasks
from arpo.tasks.prompts import protocol_system_prompt
from arpo.tasks.record import ChatMessage, Task

__all__ = [
    "BUILTIN_LAYOUTS",
    "ChatMessage",
    "DatasetConfig",
    "FieldMap",
    "Task",
    "TaskLoadError",
    "load_tasks",
    "protocol_system_prompt",
]
