#!/usr/bin/env bash
# Chapter 11's CPU comparison: seven encodings on real CIFAR-10 (recipe cifar10-cpu), the same
# budget (epochs) for each, one run at a time on the machine's CPU threads.
#
#   bash results/cifar10-cpu/run.sh DATA_DIR [RUN_DIR] [SEEDS...]
#
# DATA_DIR: a CIFAR-10 image folder (train/ and test/, one folder per class), e.g. the JPEG copy
# of ../shared/data/cifar10-jpg unpacked; or the word "torchvision" to use torchvision's CIFAR-10
# download (data/). RUN_DIR defaults to runs/cifar10-cpu, seeds to 0.
# Keeps, per run, what the chapters read (results.json, metrics.jsonl, the learned position
# parameters) in results/cifar10-cpu/<run>/; checkpoints stay in RUN_DIR.
set -u
cd "$(dirname "$0")/../.."
python=${PYTHON:-python}
data=${1:?give the CIFAR-10 image folder, or torchvision}; shift
runs=${1:-runs/cifar10-cpu}; shift || true
seeds=("$@"); (( ${#seeds[@]} )) || seeds=(0)
keep=results/cifar10-cpu
if [[ $data == torchvision ]]; then dataset=(--dataset cifar10 --download); else dataset=(--dataset imagefolder --data-dir "$data"); fi
read -ra encodings <<< "${ENCODINGS:-ape-learned axial mixed spherical liere comrope-ld uniform}"
for seed in "${seeds[@]}"; do
    for encoding in "${encodings[@]}"; do
        name="cifar10-cpu-$encoding-seed$seed"
        if [[ -f "$keep/$name/results.json" ]]; then continue; fi
        echo "== $name ($(date -u +%H:%M:%S))"
        nice "$python" -m ropelib.train --recipe cifar10-cpu --encoding "$encoding" "${dataset[@]}" \
            --seed "$seed" --run-name "$name" --out-dir "$runs" --no-progress --no-resume || continue
        mkdir -p "$keep/$name"
        cp "$runs/$name"/{results.json,metrics.jsonl} "$keep/$name/"
        "$python" - "$runs/$name/model.pt" "$keep/$name/position-parameters.pt" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], weights_only=True, map_location="cpu")["state_dict"]
torch.save({k: v for k, v in state.items() if ".rotary." in k or k.startswith("ape.")}, sys.argv[2])
PY
    done
done
