"""The visible answer: what a user would read of a completion, the text after its reasoning trace.

Every verdict is given on this text, never on the trace: an answer that appears only while the model is still
thinking (a trace cut by the token budget, a trace that never closes) is no answer. The markers and the stripping rule
are the chat contract's (`nano2.contracts.chat`); this module adds only where the trace starts.
"""

from __future__ import annotations

from nano2.contracts.chat import THINK_OPEN, strip_thinking


def visible_answer(completion: str, *, trace_open: bool) -> str:
    """The completion without its reasoning, stripped.

    `trace_open`: the prompt already opened the trace (a reasoning-on generation prompt ends with the open marker),
    so the completion starts inside it: text before the first close marker is trace, and a trace that never closes
    leaves an empty answer. Otherwise only complete trace blocks and an unclosed trailing one are removed.
    """
    return strip_thinking(THINK_OPEN + completion if trace_open else completion)
