"""Record the digest chain of every example scenario into tests/golden/chains.json.

Run only for a deliberate, versioned change of the digest encoding or of an example agent
(docs/determinism.md), in the same commit as that change:

    lockstep up --pools 2 && python tests/golden/record_chains.py && lockstep down
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [
    *sorted((ROOT / "examples" / "scenarios").glob("*.toml")),
    ROOT / "tests" / "e2e" / "scenarios" / "faults.toml",
]


def main() -> None:
    chains = {}
    for path in SCENARIOS:
        out = subprocess.run(
            [sys.executable, "-m", "lockstep.cli", "run", str(path), "--json", *sys.argv[1:]],
            check=True,
            capture_output=True,
            text=True,
        )
        summary = json.loads(out.stdout)
        chains[path.stem] = {"ticks": summary["tick"], "digests": summary["digests"]}
        print(f"{path.stem}: {summary['tick']} ticks, final {summary['digest'][:16]}")
    (ROOT / "tests" / "golden" / "chains.json").write_text(json.dumps(chains, indent=1) + "\n")


if __name__ == "__main__":
    main()
