#!/usr/bin/env bash
# Chapter 10's CIFAR-10 data: each model of chapter 11's CPU comparison (trained at 32 px)
# tested at 24-64 px under the three position protocols, and the rotary ones also with the
# test-time remedies that apply to them (PI, NTK, YaRN), on a class-balanced 2,000-image subset of the test set
# (every fifth image) to keep the 64-pixel passes short on a CPU.
#
#   bash results/cifar10-cpu/evaluate.sh DATA_DIR [RUN_DIR]
#
# DATA_DIR as for run.sh (an image folder, or "torchvision"); RUN_DIR holds the trained runs
# (default runs/cifar10-cpu). Writes results/cifar10-cpu/<run>/evaluation.json.
set -u
cd "$(dirname "$0")/../.."
python=${PYTHON:-python}
data=${1:?give the CIFAR-10 image folder, or torchvision}
runs=${2:-runs/cifar10-cpu}
keep=results/cifar10-cpu
if [[ $data == torchvision ]]; then dataset=(--dataset cifar10); else dataset=(--dataset imagefolder --data-dir "$data"); fi
for model in "$runs"/cifar10-cpu-*/model.pt; do
    name=$(basename "$(dirname "$model")")
    if [[ -f "$keep/$name/evaluation.json" ]]; then continue; fi
    # each remedy where it applies (chapter 10): NTK and YaRN rescale planar frequencies, and NTK
    # needs more than one of them; PI only moves positions
    case $name in
        *-ape-*|*-none-*) remedies=() ;;
        *-axial-*|*-mixed-*) remedies=(--remedies pi ntk yarn) ;;
        *-uniform-*) remedies=(--remedies pi yarn) ;;
        *) remedies=(--remedies pi) ;;
    esac
    echo "== $name ($(date -u +%H:%M:%S))"
    out=$(mktemp -d)
    nice "$python" -m ropelib.evaluate "$model" "${dataset[@]}" --subset 2000 --resolutions 24 32 40 48 64 \
        --protocols native extrapolate interpolate "${remedies[@]}" --out "$out" || continue
    mkdir -p "$keep/$name"
    cp "$out/evaluation.json" "$keep/$name/evaluation.json"
done
