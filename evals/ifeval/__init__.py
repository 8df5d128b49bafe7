"""IFEval (and M-IFEval es/fr/ja) instruction checkers, strict and loose scoring, the four IFEval accuracies."""

from evals.ifeval import english as _english  # noqa: F401  (registers the English instructions)
from evals.ifeval import multilingual as _multilingual  # noqa: F401  (registers es:/fr:/ja: instructions)
from evals.ifeval.registry import InstructionSpec, get_instruction, instruction_ids
from evals.ifeval.scoring import (
    IFEvalAccuracy,
    IFEvalItem,
    aggregate,
    check_instruction,
    evaluate,
    item_from_record,
    load_items,
    loose_variants,
    score_response,
)

__all__ = [
    "IFEvalAccuracy",
    "IFEvalItem",
    "InstructionSpec",
    "aggregate",
    "check_instruction",
    "evaluate",
    "get_instruction",
    "instruction_ids",
    "item_from_record",
    "load_items",
    "loose_variants",
    "score_response",
]
