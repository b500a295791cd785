#!/usr/bin/env bash
# Chapter 9's sweep (and chapter 10's synthetic resolution data): every encoding of the course on
# the synthetic relative-direction task (recipe synthetic-cpu), three seeds, one run at a time on
# one CPU thread, then each model evaluated at 16-48 px under the three position protocols.
#
#   bash results/synthetic-sweep/run.sh [RUN_DIR] [SEEDS...]     (default: runs/synthetic-sweep, 0 1 2)
#
# Keeps, per run, what the chapters read (results.json, metrics.jsonl, evaluation.json and the
# learned position parameters) in results/synthetic-sweep/<run>/; checkpoints stay in RUN_DIR.
set -u
cd "$(dirname "$0")/../.."
python=${PYTHON:-python}
runs=${1:-runs/synthetic-sweep}; shift || true
seeds=("$@"); (( ${#seeds[@]} )) || seeds=(0 1 2)
keep=results/synthetic-sweep
variants=(
    "none|none|{}"
    "ape-learned|ape-learned|{}"
    "ape-learned-std0.5|ape-learned|{init_std: 0.5}"
    "ape-sincos|ape-sincos|{}"
    "axial|axial|{}"
    "axial-learned|axial|{learnable: true}"
    "uniform|uniform|{}"
    "mixed|mixed|{}"
    "spherical|spherical|{}"
    "spherical-learned|spherical|{learnable: true}"
    "liere|liere|{}"
    "comrope-ap|comrope-ap|{}"
    "comrope-ld|comrope-ld|{}"
)
export OMP_NUM_THREADS=1
for seed in "${seeds[@]}"; do
    for variant in "${variants[@]}"; do
        IFS='|' read -r label encoding options <<< "$variant"
        name="synthetic-cpu-$label-seed$seed"
        if [[ -f "$keep/$name/evaluation.json" ]]; then continue; fi
        echo "== $name ($(date -u +%H:%M:%S))"
        nice "$python" -m ropelib.train --recipe synthetic-cpu --encoding "$encoding" --encoding-options "$options" \
            --seed "$seed" --run-name "$name" --out-dir "$runs" --no-progress --no-resume || continue
        nice "$python" -m ropelib.evaluate "$runs/$name/model.pt" --resolutions 16 24 32 40 48 \
            --protocols native extrapolate interpolate --out "$runs/$name" || continue
        mkdir -p "$keep/$name"
        cp "$runs/$name"/{results.json,metrics.jsonl,evaluation.json} "$keep/$name/"
        "$python" - "$runs/$name/model.pt" "$keep/$name/position-parameters.pt" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], weights_only=True, map_location="cpu")["state_dict"]
torch.save({k: v for k, v in state.items() if ".rotary." in k or k.startswith("ape.")}, sys.argv[2])
PY
    done
done
