"""The CI part of the seeded fault-injection suite (docs/faults.md): 15 seeds, one per
fault kind (each with up to one more fault of a random kind), each a real `lockstep up`
with the plan in LOCKSTEP_FAULTS. Every case must hold the invariant (the fault-free
digest chain and journal, by completing or by failing closed and resuming), and every
fault kind must have fired at least once. The soak (`python3 dev.py soak`) runs more."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep import faults
from tests.faults.harness import run_cases

pytestmark = pytest.mark.e2e
SEEDS = list(range(len(faults.KINDS)))  # seed s draws KINDS[s % 15] first


@pytest.mark.timeout(1200)
def test_every_seeded_fault_keeps_the_fault_free_chain(tmp_path: Path) -> None:
    cases = run_cases(SEEDS, tmp_path)
    bad = [
        f"seed {c.seed} [{c.describe()}]: {' | '.join(c.problems)}; reproduce: {c.reproduce()}"
        for c in cases
        if not c.ok
    ]
    assert not bad, "\n".join(bad)
    fired = set().union(*(c.fired_kinds() for c in cases))
    never = [k for k in faults.KINDS if k not in fired]
    assert not never, f"fault kinds that never fired: {never} (seeds {SEEDS})"
