"""Chat templates: how a conversation becomes one prompt string for each model family, and where answers stop.

Every template renders an assistant message carrying a `reasoning` key as `<think>\\nREASONING\\n</think>\\n\\n`
before its content (the SFT code passes reasoning only when train.cot is on), and every template keeps the
property training relies on: rendering the messages up to a user turn with `add_generation_prompt=True` gives an
exact prefix of rendering the whole conversation. `qwen`, `chatml` and `llama3` also render tools, tool calls and
tool results in their family's own format (see kefu.answer.toolcalls); with no tools they render as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu.errors import KefuError

# Jinja pieces shared by the templates: the reasoning block in front of an assistant answer.
_ANSWER = (
    "{%- if message.get('reasoning') %}"
    "{{- '<think>\\n' + message['reasoning'] + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- message['content'] }}"
)

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


# Qwen2.5's tool calling as its own template writes it (kefu.answer.toolcalls parses the calls back): the tools in
# the system message, each call a <tool_call> JSON block, consecutive results <tool_response> blocks of one user turn.
_QWEN_TOOLS = (
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
)
_QWEN_CALLS = (
    "{%- for call in message['tool_calls'] %}{%- set call = call['function'] %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + call['name'] + '\", \"arguments\": ' + call['arguments'] | tojson"
    " + '}\\n</tool_call>' }}"
    "{%- endfor %}"
)
_QWEN_RESULT = (
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
)


def _chatml(default_system: str | None) -> str:
    system = (
        "{%- if tools %}{{- '<|im_start|>system\\n' }}"
        "{%- if messages and messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
        "{%- else %}{{- '" + (default_system or "") + "' }}{%- endif %}" + _QWEN_TOOLS
    )
    if default_system:
        system += (
            "{%- elif messages and messages[0]['role'] != 'system' %}"
            "{{- '<|im_start|>system\\n" + default_system + "<|im_end|>\\n' }}"
        )
    return (
        system + "{%- endif %}{%- for message in messages %}"
        "{%- if tools and loop.first and message['role'] == 'system' %}"  # already in the tools' system message
        "{%- elif message['role'] == 'assistant' and message.get('tool_calls') %}{{- '<|im_start|>assistant' }}"
        "{%- if message['content'] or message.get('reasoning') %}{{- '\\n' }}"
        + _ANSWER
        + "{%- endif %}"
        + _QWEN_CALLS
        + "{{- '<|im_end|>\\n' }}"
        "{%- elif message['role'] == 'tool' %}" + _QWEN_RESULT + "{%- else %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' }}"
        "{%- if message['role'] == 'assistant' %}" + _ANSWER + "{%- else %}{{- message['content'] }}{%- endif %}"
        "{{- '<|im_end|>\\n' }}"
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


# Llama 3.1-3.3 JSON tool calling (Meta's prompt format): the functions in the system message after
# "Environment: ipython", a call as {"name": ..., "parameters": {...}} (several joined by "; "), results in
# `ipython` turns.
_LLAMA3_TOOLS = (
    "{%- if tools %}{{- '<|start_header_id|>system<|end_header_id|>\\n\\nEnvironment: ipython\\n\\n' }}"
    "{%- if messages and messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- 'You have access to the following functions. To call a function, please respond with JSON for a function "
    'call. Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
    "value}. Do not use variables.\\n\\n' }}"
    "{%- for tool in tools %}{{- tool | tojson(indent=4) + '\\n\\n' }}{%- endfor %}"
    "{{- '<|eot_id|>' }}{%- endif %}"
)
_LLAMA3_CALLS = (
    "{%- for call in message['tool_calls'] %}{%- set call = call['function'] %}"
    "{%- if not loop.first %}{{- '; ' }}{%- endif %}"
    "{{- '{\"name\": \"' + call['name'] + '\", \"parameters\": ' + call['arguments'] | tojson + '}' }}"
    "{%- endfor %}"
)
_LLAMA3 = (
    "{{- '<|begin_of_text|>' }}" + _LLAMA3_TOOLS + "{%- for message in messages %}"
    "{%- if tools and loop.first and message['role'] == 'system' %}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- else %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] != 'assistant' %}{{- message['content'] }}"
    "{%- elif not message.get('tool_calls') %}" + _ANSWER + "{%- else %}"
    "{%- if message['content'] or message.get('reasoning') %}"
    + _ANSWER
    + "{{- '\\n' }}{%- endif %}"
    + _LLAMA3_CALLS
    + "{%- endif %}{{- '<|eot_id|>' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Gemma has no system role: the system text opens the first user turn.
_GEMMA = (
    "{{- '<bos>' }}"
    "{%- set ns = namespace(system='') %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] + '\\n\\n' %}"
    "{%- else %}"
    "{%- if message['role'] == 'assistant' %}{{- '<start_of_turn>model\\n' }}" + _ANSWER + "{%- else %}"
    "{{- '<start_of_turn>user\\n' + ns.system + message['content'] }}{%- set ns.system = '' %}"
    "{%- endif %}"
    "{{- '<end_of_turn>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)

_DEEPSEEK_R1 = (
    "{{- '<｜begin▁of▁sentence｜>' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] }}"
    "{%- elif message['role'] == 'user' %}{{- '<｜User｜>' + message['content'] }}"
    "{%- else %}{{- '<｜Assistant｜>' }}" + _ANSWER + "{{- '<｜end▁of▁sentence｜>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<｜Assistant｜>' }}{%- endif %}"
)


@dataclass(frozen=True)
class Template:
    """A chat template, the token that ends an answer (becomes eos), other stop strings and the special tokens."""

    jinja: str
    eos: str
    stops: tuple[str, ...]
    specials: tuple[str, ...]
    pad: str | None = None


TEMPLATES: dict[str, Template] = {
    "chatml": Template(_chatml(None), "<|im_end|>", ("<|im_end|>", "<|endoftext|>"),
                       ("<|im_start|>", "<|im_end|>", "<|endoftext|>"), pad="<|endoftext|>"),
    "qwen": Template(_chatml(QWEN_DEFAULT_SYSTEM), "<|im_end|>", ("<|im_end|>", "<|endoftext|>"),
                     ("<|im_start|>", "<|im_end|>", "<|endoftext|>"), pad="<|endoftext|>"),
    "llama3": Template(_LLAMA3, "<|eot_id|>", ("<|eot_id|>", "<|end_of_text|>"),
                       ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                        "<|end_of_text|>")),
    "gemma": Template(_GEMMA, "<end_of_turn>", ("<end_of_turn>", "<eos>"),
                      ("<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>")),
    "deepseek-r1": Template(_DEEPSEEK_R1, "<｜end▁of▁sentence｜>", ("<｜end▁of▁sentence｜>",),
                            ("<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>")),
}  # fmt: skip
CHOICES = ("auto", *TEMPLATES)


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise KefuError(f"model.template: unknown chat template {name!r}; choose one of {', '.join(CHOICES)}")
    return TEMPLATES[name]


def _template_of(tokenizer: Any) -> str | None:
    """The tokenizer's own template as one string (some tokenizers hold a dict of named templates)."""
    tpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tpl, dict):
        tpl = tpl.get("default") or next(iter(tpl.values()), None)
    return tpl


def _add_missing_specials(tokenizer: Any, tokens: tuple[str, ...]) -> None:
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


def apply_template(tokenizer: Any, name: str) -> Any:
    """'auto' keeps the model's own template; a name installs ours with its eos/pad (adding absent special tokens).

    When tokens are added the caller must resize the model's embeddings (load_model does).
    """
    if name == "auto":
        if not _template_of(tokenizer):
            where = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
            raise KefuError(
                f"{where}: the tokenizer has no chat template; set model.template to one of "
                f"{', '.join(TEMPLATES)} (e.g. --set model.template=chatml)"
            )
        return ensure_pad(tokenizer)
    tpl = get_template(name)
    _add_missing_specials(tokenizer, tpl.specials)
    tokenizer.chat_template = tpl.jinja
    tokenizer.eos_token = tpl.eos
    if tpl.pad is not None:
        tokenizer.pad_token = tpl.pad
    return ensure_pad(tokenizer)


def ensure_pad(tokenizer: Any) -> Any:
    """Batching needs a pad token; fall back to eos, which attention masks hide anyway."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _known_template(tokenizer: Any) -> Template | None:
    """Which of our families the tokenizer's own template belongs to, recognised by its end-of-turn marker."""
    text = _template_of(tokenizer) or ""
    for tpl in TEMPLATES.values():
        if tpl.eos in text:
            return tpl
    return None


def stop_strings(name_or_tokenizer: Any) -> list[str]:
    """Strings that end an answer: for a template name its stops, for a tokenizer its template's stops and eos."""
    if isinstance(name_or_tokenizer, str):
        if name_or_tokenizer == "auto":
            raise KefuError("stop_strings('auto'): pass the tokenizer, whose own template decides the stops")
        return list(get_template(name_or_tokenizer).stops)
    tok = name_or_tokenizer
    tpl = _known_template(tok)
    stops = list(tpl.stops) if tpl else []
    if tok.eos_token and tok.eos_token not in stops:
        stops.append(tok.eos_token)
    vocab = tok.get_vocab()
    return [s for s in stops if s in vocab or s == tok.eos_token]


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Token ids generation stops at: every stop string that is a single token."""
    vocab = tokenizer.get_vocab()
    return [vocab[s] for s in stop_strings(tokenizer) if s in vocab]


def configure_generation(model: Any, tokenizer: Any) -> None:
    """Make `generate` stop at the end-of-turn token and pad with the pad token, whatever the checkpoint said."""
    gen = model.generation_config
    gen.eos_token_id = stop_token_ids(tokenizer) or tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


def fix_gguf_tokenizer(tokenizer: Any, model: Any) -> None:
    """A GGUF-derived tokenizer often names <|endoftext|> as eos; for a chat model the answer ends at <|im_end|>.

    Also restores the ChatML template when the file carried none.
    """
    vocab = tokenizer.get_vocab()
    if not _template_of(tokenizer) and "<|im_end|>" in vocab:
        tokenizer.chat_template = TEMPLATES["qwen"].jinja
    tpl = _known_template(tokenizer)
    if tpl is not None and tpl.eos in vocab:
        tokenizer.eos_token = tpl.eos
        if tpl.pad is not None and tpl.pad in vocab:
            tokenizer.pad_token = tpl.pad
    ensure_pad(tokenizer)
    configure_generation(model, tokenizer)
