"""spec + source token counts -> plan: a pure function with exact integer arithmetic.

Rules (the contract train/ relies on):
- total_steps = floor(total_tokens / (seq_len x global_batch_size)); the plan never trains past what was asked.
- phase i ends at step round(until_i x total_steps) (half rounds up), computed on exact decimals, so boundaries are
  exact steps, strictly increasing, and the last phase ends at total_steps.
- within a phase, a source gets weight/sum(weights) of the phase's sequences, floored, and the sequences left over
  go one each to the largest remainders (ties by source name): the counts sum exactly to the phase's sequences
  and each is within one sequence of its ideal share.
- a source read beyond `max_epochs` x its available tokens, counted cumulatively over phases, is an error naming
  the source, the phase, the tokens needed and the tokens available. Nothing is silently capped or re-routed.
- the output does not depend on the order in which sources or weights are written (sources are listed by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from mixtures.plan import PhasePlan, Plan, SourceAllocation, SourceSummary
from mixtures.spec import MixtureSpec
from nano2.errors import Nano2Error
from nano2.manifest import hash_config
from nano2.units import format_count


class PlanError(Nano2Error):
    """The spec is well formed but cannot be compiled into a plan."""


class InsufficientTokensError(PlanError):
    """A source would be read more than `max_epochs` times."""

    def __init__(self, source: str, phase: str, needed: int, available: int, max_epochs: float):
        self.source, self.phase = source, phase
        self.needed, self.available, self.max_epochs = needed, available, max_epochs
        cap = _cap_tokens(available, max_epochs)
        super().__init__(
            f"sources.{source}: insufficient tokens in phase {phase!r}: the plan needs {needed:,} tokens "
            f"({format_count(needed)}) of {source!r} by the end of this phase, but only {cap:,} "
            f"({format_count(cap)}) may be read: {available:,} available x max_epochs {max_epochs:g}; "
            "lower its weights, raise max_epochs or add data"
        )


@dataclass(frozen=True)
class SourceOrigin:
    """Where a source's token count came from (recorded in the plan for audits)."""

    origin: str = "declared"
    manifest_id: str | None = None


def _exact(value: float) -> Decimal:
    """The decimal a user wrote (0.1 stays 1/10, not the nearest binary float)."""
    return Decimal(repr(float(value)))


def _cap_tokens(available: int, max_epochs: float) -> int:
    return int(Fraction(_exact(max_epochs)) * available)


def _round_half_up(x: Fraction) -> int:
    return int((x + Fraction(1, 2)).__floor__())


def phase_boundaries(spec: MixtureSpec, total_steps: int) -> list[tuple[int, int]]:
    """[start, end) optimizer steps of each phase."""
    bounds, start = [], 0
    for i, phase in enumerate(spec.phases):
        end = total_steps if i == len(spec.phases) - 1 else _round_half_up(Fraction(_exact(phase.until)) * total_steps)
        if end <= start:
            raise PlanError(
                f"phases[{i}].until: phase {phase.name!r} gets no optimizer step "
                f"(total_steps {total_steps}, boundary {end}); widen it or raise total_tokens"
            )
        bounds.append((start, end))
        start = end
    return bounds


def allocate_largest_remainder(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Split `total` integer units by weight: floors plus one each to the largest remainders (ties by name)."""
    decimals = {name: _exact(w) for name, w in weights.items()}
    scale = max((-d.as_tuple().exponent for d in decimals.values() if d), default=0)
    scale = max(scale, 0)
    numerators = {name: int(d.scaleb(scale)) for name, d in decimals.items()}
    denominator = sum(numerators.values())
    if denominator <= 0:
        raise PlanError("weights sum to zero")
    counts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for name, n in numerators.items():
        quotient, remainder = divmod(n * total, denominator)
        counts[name] = quotient
        if remainder:
            remainders.append((-remainder, name))
    leftover = total - sum(counts.values())
    remainders.sort()
    for _, name in remainders[:leftover]:
        counts[name] += 1
    return counts


def compile_plan(
    spec: MixtureSpec,
    source_tokens: Mapping[str, int],
    origins: Mapping[str, SourceOrigin] | None = None,
) -> Plan:
    """Compile a spec into an exact plan, given the available tokens of every source."""
    origins = origins or {}
    missing = sorted(set(spec.sources) - set(source_tokens))
    if missing:
        raise PlanError(f"sources.{missing[0]}: no token count given for this source")
    for name, count in source_tokens.items():
        if name in spec.sources and (not isinstance(count, int) or count < 0):
            raise PlanError(f"sources.{name}: token count must be a non-negative integer, got {count!r}")

    seq_len, batch = spec.seq_len, spec.global_batch_size
    tokens_per_step = seq_len * batch
    total_steps = spec.total_tokens // tokens_per_step
    bounds = phase_boundaries(spec, total_steps)
    names = sorted(spec.sources)
    used = dict.fromkeys(names, 0)
    caps = {n: _cap_tokens(source_tokens[n], spec.sources[n].max_epochs) for n in names}

    phases: list[PhasePlan] = []
    for phase, (start, end) in zip(spec.phases, bounds, strict=True):
        steps = end - start
        sequences = steps * batch
        counts = allocate_largest_remainder(phase.weights, sequences)
        allocations = []
        over: list[str] = []
        for name in sorted(counts):
            tokens = counts[name] * seq_len
            used[name] += tokens
            available = source_tokens[name]
            if used[name] > caps[name]:
                over.append(name)
            allocations.append(
                SourceAllocation(
                    name=name,
                    weight=phase.weights[name],
                    share=counts[name] / sequences,
                    sequences=counts[name],
                    tokens=tokens,
                    epochs=used[name] / available if available else (0.0 if not used[name] else float("inf")),
                )
            )
        if over:
            name = over[0]
            raise InsufficientTokensError(
                name, phase.name, used[name], source_tokens[name], spec.sources[name].max_epochs
            )
        phases.append(
            PhasePlan(
                name=phase.name,
                until=phase.until,
                start_step=start,
                end_step=end,
                steps=steps,
                sequences=sequences,
                tokens=sequences * seq_len,
                sources=allocations,
            )
        )

    summaries = [
        SourceSummary(
            name=n,
            origin=origins.get(n, SourceOrigin()).origin,
            manifest_id=origins.get(n, SourceOrigin()).manifest_id,
            available_tokens=source_tokens[n],
            max_epochs=spec.sources[n].max_epochs,
            planned_tokens=used[n],
            epochs=used[n] / source_tokens[n] if source_tokens[n] else 0.0,
        )
        for n in names
    ]
    return Plan(
        name=spec.name,
        spec_hash=hash_config(spec),
        seq_len=seq_len,
        global_batch_size=batch,
        tokens_per_step=tokens_per_step,
        requested_tokens=spec.total_tokens,
        total_steps=total_steps,
        total_tokens=total_steps * tokens_per_step,
        sources=summaries,
        phases=phases,
    )
