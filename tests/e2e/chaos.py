"""The kill -9 campaign (``make chaos``): ``pinsage run`` killed at seeded moments in every stage.

On the tiny config (deterministic training, one shared publish root and registry in a fresh run
area, the committed code frozen in a copy): one clean run is the reference; two ``pinsage run`` started
together on another run directory must both finish, one saying it waited, with the reference's
outputs; then on that directory each round starts ``pinsage run --force`` (so every
stage does its work again), waits until the log says the round's target stage is running, sleeps
a seeded fraction of that stage's clean duration and kills the whole process group with SIGKILL
(Spark's JVM included, as a lost pod or an OOM kill would), then reruns plain ``pinsage run``.
After every rerun it checks:

* the run folder equals the clean run's (byte for byte, except what differs per process or per
  second: the stages' ``report.json`` timings, the TF Transform graph's generated names, the Keras
  archive's save date, ``decision.json``'s MLflow run id);
* the registry holds exactly one version for the model's fingerprint;
* no MLflow run is left RUNNING;
* no temporary folder (``.*.tmp``, ``.*.old-*``, ``.*.deleting``) is left in the run area;
* the publish root's ``CURRENT`` names the champion's index version.

Usage: ``python tests/e2e/chaos.py --kills 20 --seed 0 --out bench/results/chaos.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from run_fixtures import digests  # noqa: E402

from components.stages import STAGE_NAMES  # noqa: E402

EPOCH = "1767225600"  # SOURCE_DATE_EPOCH: one logical time for every attempt
VOLATILE_PREFIXES = ("features/transform/", "checkpoints/")
TEMP = re.compile(r"^\..*(\.tmp|\.old-\d+|\.deleting)$")


def comparable(run_dir: Path) -> dict[str, str]:
    """Digests of the run folder without what differs per process or per second."""
    files = {
        k: v
        for k, v in digests(run_dir).items()
        if not k.startswith(VOLATILE_PREFIXES) and not k.endswith("report.json")
    }
    keras = run_dir / "model" / "model.keras"
    if keras.exists():
        with zipfile.ZipFile(keras) as z:
            members = {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if n != "metadata.json"}
        files["model/model.keras"] = hashlib.sha256(json.dumps(members, sort_keys=True).encode()).hexdigest()
    decision = run_dir / "registration" / "decision.json"
    if decision.exists():
        d = json.loads(decision.read_text())
        d.pop("mlflow_run_id", None)
        files["registration/decision.json"] = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
    return files


def pinsage(config: Path, run_dir: Path, force: bool) -> subprocess.Popen:
    """``pinsage run`` from the campaign's frozen copy of the code (``<area>/code``): fingerprints
    cover the code, so edits made meanwhile in the working tree must not reach the attempts."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"SOURCE_DATE_EPOCH": EPOCH}
    cmd = [sys.executable, "-m", "components.cli", "run", "--config", str(config), "--run-dir", str(run_dir)]
    return subprocess.Popen(
        cmd + (["--force"] if force else []),
        cwd=config.parent / "code",  # first on sys.path under -m
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes Spark's JVM along
    )


def kill_in_stage(config: Path, run_dir: Path, stage: str, delay: float) -> dict:
    """Start a --force attempt, kill -9 it ``delay`` s after ``stage`` starts; what was hit."""
    proc = pinsage(config, run_dir, force=True)
    running: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"stage (\w+)\s+running", line)
            if m:
                running.append(m.group(1))
                if m.group(1) == stage:
                    started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not started.wait(0.05):
        if proc.poll() is not None:
            break
    time.sleep(delay)
    hit = proc.poll() is None
    if hit:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    return {"target": stage, "delay_s": round(delay, 3), "killed": hit, "stage_hit": running[-1] if running else None}


def registry_state(area: Path, model: str, fingerprint: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{area / 'mlflow.db'}")
    versions = client.search_model_versions(f"name='{model}'")
    versions = [v for v in versions if v.tags.get("model_fingerprint") == fingerprint]
    exp = client.get_experiment_by_name("pinsage")
    running = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'") if exp else []
    champion = client.get_model_version_by_alias(model, "champion")
    return {
        "versions_for_fingerprint": len(versions),
        "running_runs": len(running),
        "champion_index": champion.tags.get("index_version"),
    }


def check(area: Path, run_dir: Path, reference: dict[str, str]) -> dict:
    """The invariants after a rerun; ``ok`` when all hold."""
    now = comparable(run_dir)
    differ = sorted(k for k in set(now) | set(reference) if now.get(k) != reference.get(k))
    decision = json.loads((run_dir / "registration" / "decision.json").read_text())
    reg = registry_state(area, decision["registered_model"], decision["weights_digest"])
    temps = sorted(str(p.relative_to(area)) for p in area.rglob(".*") if TEMP.match(p.name) and "code" not in p.parts)
    current = (area / "published" / "CURRENT").read_text().strip()
    ok = (
        not differ
        and reg["versions_for_fingerprint"] == 1
        and reg["running_runs"] == 0
        and not temps
        and current == reg["champion_index"]
    )
    return {"ok": ok, "differing_files": differ, **reg, "temp_folders": temps, "current": current}


def concurrent_runs(config: Path, run_dir: Path, reference_dir: Path, with_reference: bool = False) -> dict:
    """Two ``pinsage run`` on one run directory started together: both must finish, one saying it
    waited for the other, and the folder must equal a single clean run's (``reference_dir``).

    ``with_reference``: the clean run into ``reference_dir`` starts together with the pair (a third
    attempt on the same registry and publish root, in its own run directory) instead of before it.
    """
    dirs = [run_dir, run_dir] + ([reference_dir] if with_reference else [])
    procs = [pinsage(config, d, force=False) for d in dirs]
    logs = [p.communicate()[1] for p in procs]
    if with_reference and procs[2].returncode != 0:
        raise SystemExit(f"the clean run failed:\n{logs[2][-4000:]}")
    now, reference = comparable(run_dir), comparable(reference_dir)
    return {
        "exit_codes": [p.returncode for p in procs[:2]],
        "waited": ["waiting for run directory" in log for log in logs[:2]],
        "differing_files": sorted(k for k in set(now) | set(reference) if now.get(k) != reference.get(k)),
        "reference_files": len(reference),
    }


def clean_run(config: Path, run_dir: Path, force: bool = False) -> dict[str, float]:
    """An unkilled run; each stage's duration (for the kill moments)."""
    proc = pinsage(config, run_dir, force=force)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the clean run failed:\n{err[-4000:]}")
    return {s: json.loads((run_dir / s / "report.json").read_text())["seconds"] for s in STAGE_NAMES}


def prepare_area(area: Path) -> Path:
    """The committed code frozen in ``area/code`` and the campaign's config; returns the config."""
    import yaml

    config = area / "chaos.yaml"
    # the committed code (HEAD), neither edits in progress in the working tree nor later ones
    (area / "code").mkdir()
    tree = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD", "pinsage_model", "components", "dags"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(area / "code")], input=tree, check=True)
    base = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    base["train"]["deterministic"] = True  # byte-identical reruns
    base.setdefault("index", {})["publish_root"] = str(area / "published")
    config.write_text(yaml.safe_dump(base))
    return config


def campaign(area: Path, kills: int, seed: int) -> dict:
    config = prepare_area(area)
    run_dir = area / "run"
    t0 = time.monotonic()
    seconds = clean_run(config, area / "single")
    reference = comparable(area / "single")
    together = concurrent_runs(config, run_dir, area / "single")
    print(json.dumps({"concurrent_runs": together}), flush=True)
    # The kill moments use each stage's time in a warm --force attempt (the clean run also
    # compiled the numba kernels, whose cache later attempts reuse).
    seconds = clean_run(config, run_dir, force=True)
    rng = random.Random(seed)
    rounds = []
    for i in range(kills):
        stage = STAGE_NAMES[i % len(STAGE_NAMES)]
        kill = kill_in_stage(config, run_dir, stage, rng.uniform(0, max(seconds[stage], 0.05)))
        rerun = pinsage(config, run_dir, force=False)
        _, err = rerun.communicate()
        result = {**kill, "rerun_exit": rerun.returncode}
        result |= check(area, run_dir, reference) if rerun.returncode == 0 else {"ok": False, "error": err[-2000:]}
        rounds.append(result)
        print(json.dumps({k: result[k] for k in ("target", "stage_hit", "killed", "rerun_exit", "ok")}), flush=True)
    hit = [r for r in rounds if r["killed"]]
    return {
        "config": "configs/tiny.yaml + train.deterministic: true, one publish root and registry",
        "seed": seed,
        "kills_planned": kills,
        "kills": len(hit),
        "stages_hit": {s: sum(r["stage_hit"] == s for r in hit) for s in STAGE_NAMES},
        "recoveries": sum(r["ok"] for r in rounds),
        "concurrent_runs": together,
        "warm_stage_seconds": seconds,
        "wall_s": round(time.monotonic() - t0, 1),
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "chaos.json"))
    parser.add_argument("--area", default="", help="run area to use (default: a fresh temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pinsage-chaos-") as tmp:
        area = Path(args.area or tmp).resolve()
        area.mkdir(parents=True, exist_ok=True)
        result = campaign(area, args.kills, args.seed)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['kills']} kills, {result['recoveries']}/{len(result['rounds'])} recoveries -> {args.out}")
    together = result["concurrent_runs"]
    both = together["exit_codes"] == [0, 0] and any(together["waited"]) and not together["differing_files"]
    print(f"two runs on one run directory: exit codes {together['exit_codes']}, waited {together['waited']}")
    return 0 if both and result["recoveries"] == len(result["rounds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
