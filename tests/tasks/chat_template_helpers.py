"""A Hermes/Qwen-style tool-calling chat template for the toolworld tokenizer (tests only): tools
listed by name and arguments in the system turn (short, for a tiny model's short context), calls as ``<tool_call>{"name", "arguments"}</tool_call>`` in the
assistant turn, results as ``<tool_response>`` blocks in one user turn per round."""

from __future__ import annotations

from pathlib import Path

from arpo.tasks.toolworld import load_tokenizer

HERMES_TEMPLATE = (
    "{%- set rest = messages %}"
    "{%- if tools %}<|system|>{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }} "
    "{%- set rest = messages[1:] %}{% endif %}Tools: <tools>{% for tool in tools %}{{ tool.function.name }}("
    "{{ tool.function.parameters.properties | list | join(', ') }}) {% endfor %}</tools>"
    "{%- endif %}"
    "{%- for message in rest %}"
    "{%- if message['role'] == 'tool' %}"
    "{%- if loop.first or loop.previtem['role'] != 'tool' %}<|user|>{% endif %}"
    "<tool_response>{{ message['content'] }}</tool_response>"
    "{%- elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] or '' }}"
    "{%- for call in message.get('tool_calls', []) %}"
    '<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}</tool_call>'
    "{%- endfor %}{{ eos_token }}"
    "{%- else %}<|{{ message['role'] }}|>{{ message['content'] }}{% endif %}"
    "{%- endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]


def hermes_tokenizer(toolworld_tokenizer_dir: Path, out: Path, template: str = HERMES_TEMPLATE):
    """The toolworld tokenizer with the tool-calling tags as added tokens and ``template``, saved to ``out``."""
    tokenizer = load_tokenizer(toolworld_tokenizer_dir)
    tokenizer.add_tokens(TAGS)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(out)
    return load_tokenizer(out)
