#!/usr/bin/env bash
# The GPU comparison of chapter 11: the colab-cifar10 recipe (ViT-S/4, 8 heads x 48) for seven
# encodings, trained side by side on one GPU, on the JPEG copy of CIFAR-10 (ImageFolder layout).
#
#   bash results/colab-cifar10-h200/run.sh DATA_DIR OUT_DIR EPOCHS [extra ropelib.train options]
#
# Writes OUT_DIR/runs/<run>/{results.json,metrics.jsonl}, OUT_DIR/position-parameters/<run>.pt
# (the learned position parameters of every layer, for chapter 13) and OUT_DIR/manifest.json.
set -u
data=$1; out=$2; epochs=$3; shift 3
encodings=(ape-learned axial uniform mixed spherical liere comrope-ld)
mkdir -p "$out/runs" "$out/position-parameters"
start=$(date +%s)
threads=$(( $(nproc) / ${#encodings[@]} )); (( threads < 1 )) && threads=1
for encoding in "${encodings[@]}"; do
    OMP_NUM_THREADS=$threads PYTHONUNBUFFERED=1 timeout "${TRAIN_TIMEOUT:-3000}" \
        python3 -m ropelib.train --recipe colab-cifar10 --encoding "$encoding" --dataset imagefolder \
        --data-dir "$data" --epochs "$epochs" --out-dir "$out/runs" "$@" \
        > "$out/runs/log-$encoding.txt" 2>&1 &
done
wait
python3 - "$out" "$start" "$epochs" "$data" <<'PY'
import json, subprocess, sys, time
from pathlib import Path
import torch
out, start, epochs, data = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for model in sorted((out / "runs").glob("*/model.pt")):
    state = torch.load(model, weights_only=True, map_location="cpu")["state_dict"]
    keep = {k: v for k, v in state.items() if ".rotary." in k or k.startswith("ape.")}
    torch.save(keep, out / "position-parameters" / f"{model.parent.name}.pt")
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except OSError:
    gpu = None
manifest = {"script": "results/colab-cifar10-h200/run.sh", "argv": sys.argv[1:], "epochs": epochs,
            "data_dir": data, "wall_seconds_all_runs": round(time.time() - start, 1), "gpu": gpu,
            "runs_finished": sorted(p.parent.name for p in (out / "runs").glob("*/results.json"))}
(out / "manifest.json").write_text(json.dumps(manifest, indent=1))
print(json.dumps(manifest, indent=1))
PY
