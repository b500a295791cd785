"""The benchmark command runs and records its provenance (its timings are not asserted)."""

from __future__ import annotations

import json

from ropelib import bench


def test_bench_runs_in_smoke_mode_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROPELIB_SMOKE", "1")
    out = tmp_path / "bench.json"
    bench.main(["--device", "cpu", "--json", str(out)])
    record = json.loads(out.read_text())
    rows = record["results"]["float32"]["ratios"]
    assert set(rows) == {"rope1d", "axial", "uniform", "mixed", "spherical", "liere", "comrope-ap", "comrope-ld"}
    assert all(row["copy"] > 0 for row in rows.values())
    assert "timm" in rows["axial"] and "timm" in rows["mixed"] and "mixed" in rows["liere"]
    assert record["provenance"]["environment"]["torch"]
    assert record["provenance"]["smoke"] is True
    assert "x copy" in capsys.readouterr().out
