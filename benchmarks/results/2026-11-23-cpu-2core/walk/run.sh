#!/bin/bash
# The path from "a folder of our videos" to a served model, timed on this machine.
set -e
cd "$(git rev-parse --show-toplevel)"  # the repository root
W=runs/walk
rm -rf $W/videos $W/repo $W/dataset $W/train $W/served $W/eval
export S2S_TRITON_ADMIN_KEY=walk-through-admin-key-1234
# 1. "our videos": 24 clips with their sound, 12-30 s, three containers, plus a silent one and a broken one
.venv/bin/python - <<'PY'
from pathlib import Path
from s2s.synth import make_clip, encode_clip
out = Path("runs/walk/videos"); out.mkdir(parents=True)
for i in range(24):
    seconds = 12 + (i * 7) % 19
    container = ("mp4", "webm", "mov")[i % 3]
    encode_clip(make_clip(500 + i, seconds), out / f"take_{i:02d}.{container}", container=container, with_audio=True)
encode_clip(make_clip(600, 12), out / "no_sound.mp4")
(out / "broken.mp4").write_bytes((out / "take_00.mp4").read_bytes()[:5000])
PY
t() { local s=$(date +%s.%N); "$@"; echo "TIME $(echo "$(date +%s.%N) - $s" | bc) s: $*" >> $W/times.txt; }
: > $W/times.txt
t .venv/bin/s2s export --model-repository $W/repo --max-duration 60
.venv/bin/s2s serve --model-repository $W/repo --grpc-port 18001 --http-port 18000 --metrics-port 18002 > $W/serve.log 2>&1 &
SERVE=$!
trap "kill $SERVE 2>/dev/null || true" EXIT
for i in $(seq 600); do grep -q "Triton is ready" $W/serve.log && break; sleep 1; done
t .venv/bin/s2s dataset --source $W/videos --output $W/dataset --url localhost:18001 --concurrency 2 --model-repository $W/repo
kill $SERVE; wait $SERVE || true
t .venv/bin/s2s train --data $W/dataset --output $W/train --generator-steps 500 --vocoder-steps 150
t .venv/bin/s2s export --model-repository $W/served --generator-checkpoint $W/train/generator/checkpoint_000500_netG --vocoder-checkpoint $W/train/vocoder/best_netG.pt --max-duration 60
t .venv/bin/s2s eval --data $W/dataset --output $W/eval --generator-checkpoint $W/train/generator/checkpoint_000500_netG --vocoder-checkpoint $W/train/vocoder/best_netG.pt
echo done >> $W/times.txt
