#!/usr/bin/env bash
# Chapter 10's remedy data: every rotary run of the synthetic sweep (run.sh) evaluated at 16-48 px
# with the extrapolate placement, with and without the test-time remedies of ropelib.remedies.
#
#   bash results/synthetic-sweep/remedies.sh [SWEEP_DIR]     (default: runs/synthetic-sweep)
#
# NTK and YaRN are defined for planar encodings only, and NTK needs a frequency spread: axial,
# axial-learned and mixed get pi ntk yarn; uniform gets pi yarn; the non-planar encodings
# (spherical, spherical-learned, liere, comrope-ap, comrope-ld) get pi.
#
# The sweep's models were written before TrainConfig nested ViTConfig (commit e890587); their
# recorded train_config has the model fields flat. Each is first rewritten, weights untouched,
# into runs/remedies-models/<run>/model.pt in the nested form, which ropelib.evaluate reads;
# evaluation.json's source.model names that copy and source.original the sweep's model.pt.
set -u
cd "$(dirname "$0")/../.."
python=${PYTHON:-python}
sweep=${1:-runs/synthetic-sweep}
keep=results/synthetic-sweep/remedies
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
declare -A remedies=(
    [axial]="pi ntk yarn" [axial-learned]="pi ntk yarn" [mixed]="pi ntk yarn"
    [uniform]="pi yarn"
    [spherical]="pi" [spherical-learned]="pi" [liere]="pi" [comrope-ap]="pi" [comrope-ld]="pi"
)
for variant in axial axial-learned mixed uniform spherical spherical-learned liere comrope-ap comrope-ld; do
    for seed in 0 1 2; do
        run=synthetic-cpu-$variant-seed$seed
        src=$sweep/$run/model.pt
        [[ -f $src ]] || { echo "missing $src" >&2; continue; }
        copy=runs/remedies-models/$run/model.pt
        mkdir -p "$(dirname "$copy")"
        "$python" - "$src" "$copy" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
t = dict(state["train_config"])
if not isinstance(t.get("model"), dict):
    for k in list(t):
        if k in state["vit_config"] and k != "model":
            del t[k]
    t["model"] = dict(state["vit_config"])
# fields the current configs no longer have (e.g. position_protocol: the protocol is now an
# argument of forward, given here on the command line) are dropped, and said so
from ropelib.config import TrainConfig, ViTConfig
import dataclasses
for cls, d in ((ViTConfig, t["model"]), (TrainConfig, t)):
    gone = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    for k in gone:
        print(f"dropped {k}={d.pop(k)!r}", file=sys.stderr)
state["train_config"] = t
torch.save(state, sys.argv[2])
PY
        echo "== $run: ${remedies[$variant]}"
        # ropelib.evaluate never overwrites (it would write evaluation-2.json): start afresh
        rm -f "$keep/$run/evaluation.json" "$keep/$run/evaluation.png"
        # shellcheck disable=SC2086
        "$python" -m ropelib.evaluate "$copy" --resolutions 16 24 32 40 48 --protocols extrapolate \
            --remedies ${remedies[$variant]} --device cpu --out "$keep/$run" || continue
        "$python" - "$keep/$run/evaluation.json" "$src" <<'PY'
import json, sys
path, original = sys.argv[1], sys.argv[2]
record = json.load(open(path))
record["source"]["original"] = original
json.dump(record, open(path, "w"), indent=2)
open(path, "a").write("\n")
PY
    done
done
