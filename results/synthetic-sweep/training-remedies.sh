#!/usr/bin/env bash
# Chapter 10's training-time remedies: chapter 9's task (recipe synthetic-cpu) trained with
# ComRoPE's position jitter (--position-jitter 1.0: Gaussian noise of std 0.5 patch, clamped
# to half a patch, the authors' code at sigma = 1) or DINOv3's coordinate rescaling
# (--position-augment '{rescale: 2.0}': one log-uniform scale in [1/2, 2] per batch, DINOv3's
# pretraining default), for axial and mixed RoPE, three seeds; each model then evaluated like
# the sweep's (16-48 px, three protocols). Same seeds as the sweep, so every run pairs with
# the sweep's run of the same encoding and seed (same initial weights, same images).
#
#   bash results/synthetic-sweep/training-remedies.sh [RUN_DIR] [SEEDS...]
set -u
cd "$(dirname "$0")/../.."
python=${PYTHON:-python}
runs=${1:-runs/training-remedies}; shift || true
seeds=("$@"); (( ${#seeds[@]} )) || seeds=(0 1 2)
keep=results/synthetic-sweep/training-remedies
variants=(
    "jitter|--position-jitter|1.0"
    "dinov3|--position-augment|{rescale: 2.0}"
)
export OMP_NUM_THREADS=1
for seed in "${seeds[@]}"; do
    for encoding in axial mixed; do
        for variant in "${variants[@]}"; do
            IFS='|' read -r label flag value <<< "$variant"
            name="synthetic-cpu-$encoding-$label-seed$seed"
            if [[ -f "$keep/$name/evaluation.json" ]]; then continue; fi
            echo "== $name ($(date -u +%H:%M:%S))"
            nice "$python" -m ropelib.train --recipe synthetic-cpu --encoding "$encoding" "$flag" "$value" \
                --seed "$seed" --run-name "$name" --out-dir "$runs" --no-progress --no-resume || continue
            nice "$python" -m ropelib.evaluate "$runs/$name/model.pt" --resolutions 16 24 32 40 48 \
                --protocols native extrapolate interpolate --out "$runs/$name" || continue
            mkdir -p "$keep/$name"
            cp "$runs/$name"/{results.json,metrics.jsonl,evaluation.json} "$keep/$name/"
        done
    done
done
