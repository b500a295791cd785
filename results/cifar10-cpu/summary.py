"""Print the table of results/cifar10-cpu/ (Markdown): one row per committed run.

    python results/cifar10-cpu/summary.py
"""
import json
from pathlib import Path

here = Path(__file__).resolve().parent
print("| run | top-1 % (32 px, 10,000 images) | top-5 % | final train loss | train min | wall min | img/s | commit |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for path in sorted(here.glob("cifar10-cpu-*/results.json"), key=lambda p: p.stat().st_mtime):
    r = json.loads(path.read_text())
    a = r["accuracy"][str(r["config"]["model"]["img_size"])]
    print(f"| {r['run']} | {a['top1']:.2f} | {a['top5']:.2f} | {r['final_train_loss']:.3f} | "
          f"{r['train_seconds'] / 60:.1f} | {r['wall_seconds_this_session'] / 60:.1f} | "
          f"{r['throughput_images_per_second']:.0f} | {r['provenance']['commit'][:7]} |")
