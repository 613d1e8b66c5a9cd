"""A rates.py jsonl summarised per generator: onset accuracy and AP over all clips, detections per clip, and the
scores of the clips that hold one kind alone (a markdown table).

    python kinds.py OUT.jsonl [OUT.jsonl ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

rows = [json.loads(line) for path in sys.argv[1:] for line in Path(path).read_text().splitlines() if line]
names = list(dict.fromkeys(k for r in rows for k in r["scores"]))
kinds = sorted({k for r in rows for k in r["kinds"]})
clips = {r["seed"]: r for r in rows}.values()  # each clip once, whichever files score it
header = ["generator", "onset acc.", "AP", f"detections per clip (true {np.mean([r['truth'] for r in clips]):.1f})"]
header += [f"{k} ({sum(r['kinds'] == [k] for r in clips)})" for k in kinds]
sys.stdout.write("| " + " | ".join(header) + " |\n|---|" + "---:|" * (len(header) - 1) + "\n")
for name in names:
    scored = [r for r in rows if name in r["scores"]]
    scores = [r["scores"][name] for r in scored]
    cells = [name, f"{np.mean([s['accuracy'] for s in scores]):.3f}", f"{np.mean([s['ap'] for s in scores]):.3f}",
             f"{np.mean([s['detected'] for s in scores]):.1f}"]  # fmt: skip
    for kind in kinds:
        alone = [r["scores"][name] for r in scored if r["kinds"] == [kind]]
        cells.append(f"{np.mean([s['accuracy'] for s in alone]):.2f} / {np.mean([s['ap'] for s in alone]):.2f}"
                     if alone else "")  # fmt: skip
    sys.stdout.write("| " + " | ".join(cells) + f" |  ({len(scored)} clips)\n")
