"""The GPU check's steps, each in its own process with a time cap, and its summary table (run by gpu_check.sh).

    python -m benchmarks.gpu_check --out OUT [--budget 470] [--dry] [--osie-recipe jobs/osie_recipe.py] [--shared DIR]
    python -m benchmarks.gpu_check --plan --budget 480 --setup-worst 230   # the budget plan only (gpu_check.sh)
    GPU_CHECK_STEPS=pytest_gpu,osie benchmarks/gpu_check.sh                # only those steps (--steps)

Steps, in order (cheap and essential first; torch.compile and the OSIE recipe last, the recipe getting what
is left of the budget): environment; adversarial step (bf16, channels_last, eager); loss-study step; real
loader + step on synthetic model-size shards; GPU metrics against the CPU and a SALICON validation pass
projected; ``pytest -m gpu``; the adversarial step under torch.compile; the SalGAN recipe on the shared
OSIE images (``--osie-recipe``, skipped when missing; the default recipe is skipped with "skipped: no
../shared" where its OSIE data or VGG-16 weights are absent, as on a lent machine). A step that fails, crashes
or runs out of time is reported as such in the table; the others run regardless; the exit status is 1 when a
step that ran did not end ok, so a skipped step never fails the check. ``--dry`` runs every step on the CPU at
tiny sizes (seconds each; torch.compile with its "eager" backend): what CI tests. Writes OUT/summary.txt, OUT/
summary.json (every step's figures) and OUT/steps/<step>.log|.json (the end of each log is printed too).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADV_TARGET = 2000.0  # img/s of the adversarial step on one H100/H200 (issue 16)
MIN_LEFT = 20  # seconds each later step keeps when an earlier one is capped
ARCHIVE_S = 10  # gpu_check.sh's share of the budget after the steps: the archive of their logs, the exit
DEFAULT_RECIPE = REPO / "jobs" / "osie_recipe.py"
LOG_TAIL = 30  # lines of each step's output repeated in the main log


@dataclass
class Step:
    id: str
    label: str
    cap: int  # seconds at most
    argv: list[str] = field(default_factory=list)  # after the Python interpreter
    skip: str = ""  # a reason to skip it


def steps(dry: bool, out: Path, osie: Path | None, shared: Path | None = None) -> list[Step]:
    """The steps with their arguments: GPU sizes, or tiny CPU ones when ``dry``. ``osie``: the recipe (None: none
    in a dry run); ``shared``: where the recipe's data and weights are looked for (default the recipe's
    ../shared)."""
    js = lambda step: ["--json", str(out / "steps" / f"{step}.json")]  # noqa: E731
    tiny = ["--device", "cpu", "--width", "0.0625", "--steps", "1", "--warmup", "1", "--matmul-n", "256"]
    adv = (["-m", "benchmarks.train_bench", "--bf16", "--channels-last"]
           + (tiny + ["--batch", "2", "--size", "64", "96"] if dry else ["--device", "cuda", "--steps", "20",
                                                                           "--warmup", "3"]))
    loss = (["-m", "benchmarks.train_bench", "--step", "loss_study", "--bf16", "--channels-last"]
            + (tiny + ["--batch", "2", "--size", "256", "256"] if dry else ["--device", "cuda", "--steps", "10"]))
    loader = ["-m", "benchmarks.loader_step_bench"] + (
        ["--device", "cpu", "--n", "64", "--distinct", "8", "--size", "64", "96", "--model-size", "32", "48",
         "--width", "0.0625", "--batch", "4", "--steps", "3", "--warmup", "1", "--workers", "1", "--pack-workers", "1"]
        if dry else ["--device", "cuda", "--workers", "2", "--steps", "100", "--pack-workers", "8"])
    metrics = ["-m", "benchmarks.metrics_bench", "--no-reference", "--agree"] + (
        ["--device", "cpu", "--n", "4", "--batch", "4", "--repeats", "1", "--val-n", "4"] if dry
        else ["--device", "cuda", "--n", "256", "--repeats", "2", "--val-n", "64"])
    gpu_tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                       if "mark.gpu" in p.read_text())
    pytest = ["-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={out / 'steps' / 'pytest.xml'}",
              *gpu_tests]
    # OSIE's own epochs (--passes 1: 15 + 15 epochs, 675 steps) fit the check's budget; the SALICON-sized
    # default (21 passes, ~14,000 steps) is the recipe's own command
    recipe = ([str(osie), "--out", str(out / "osie"), "--passes", "1", "--device", "cpu" if dry else "cuda",
               *in_checkout(shared)] if osie else [])
    # the default recipe needs ../shared; a dry run shows the row a real run would give here
    osie_reason = (shared_skip(shared) if osie is None or osie == DEFAULT_RECIPE else "") or osie_skip(osie)
    compile_extra = ["--compile"] + (["--compile-backend", "eager"] if dry else [])
    return [
        Step("env", "environment", 60, ["-m", "benchmarks.gpu_check", "--probe", str(out / "steps" / "env.json")]),
        Step("adversarial", "adversarial step, bf16, channels_last", 120, adv + js("adversarial")),
        Step("loss_study", "loss-study step (ASPPNet, LC2 + R)", 120, loss + js("loss_study")),
        Step("loader_step", "real loader + step (model-size shards)", 150, loader + js("loader_step")),
        Step("metrics", "GPU metrics vs CPU; validation pass", 150, metrics + js("metrics")),
        Step("pytest_gpu", "pytest -m gpu", 150, pytest, "" if gpu_tests else "no test marked gpu"),
        Step("compiled", "adversarial step + torch.compile", 240, adv + compile_extra + js("compiled")),
        Step("osie", "SalGAN recipe on OSIE (BCE/4, GAN)", 100_000, recipe, osie_reason),
    ]


def recipe_inputs(shared: Path | None = None) -> list[tuple[str, Path, Path]]:
    """The recipe's inputs as (flag, where under ``shared`` (default its ../shared), copy in the checkout's
    shared/); [] when the recipe cannot be imported."""
    try:
        from salnet.recipes.osie import DEFAULT_DATA, DEFAULT_WEIGHTS, SHARED
    except ImportError:
        return []
    return [(flag, (shared or SHARED) / p.relative_to(SHARED), REPO / "shared" / p.relative_to(SHARED))
            for flag, p in (("--data", DEFAULT_DATA), ("--weights", DEFAULT_WEIGHTS))]


def in_checkout(shared: Path | None = None) -> list[str]:
    """--data/--weights for the recipe where its defaults (``shared``, default ../shared beside the checkout) are
    absent but a copy lies in the checkout's own shared/ (what a device machine receives: the checkout alone);
    those under ``shared`` when it is not the recipe's default."""
    extra = []
    for flag, there, local in recipe_inputs(shared):
        if there.exists() and shared is not None:
            extra += [flag, str(there)]
        elif not there.exists() and local.exists():
            extra += [flag, str(local)]
    return extra


def shared_skip(shared: Path | None = None) -> str:
    """"skipped: no ../shared (...)" when the recipe's OSIE data or VGG-16 weights are neither under ``shared`` nor
    in the checkout's shared/ (a lent machine has neither); "" when both are there."""
    gone = [there.name for _, there, local in recipe_inputs(shared) if not there.exists() and not local.exists()]
    return f"skipped: no ../shared ({' and '.join(gone)} absent)" if gone else ""


def osie_skip(recipe: Path | None) -> str:
    """Why the recipe step is skipped ("" when it runs)."""
    if recipe is None:
        return "skipped: dry run (no --osie-recipe)"
    if not recipe.is_file():
        shown = recipe.relative_to(REPO) if recipe.is_relative_to(REPO) else recipe
        return f"skipped: {shown} missing"
    return ""


def run_step(step: Step, timeout: float, out: Path) -> dict:
    """Run one step in its own process group (a timeout ends it and its children); returns its row."""
    row = {"id": step.id, "label": step.label, "status": "ok", "seconds": 0.0, "values": {}, "summary": ""}
    if step.skip:
        return {**row, "status": "skipped", "summary": step.skip}
    if timeout < 5:
        return {**row, "status": "skipped", "summary": "skipped: no time left in the budget"}
    log = out / "steps" / f"{step.id}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, *step.argv], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the step's own process group: its loader workers too
            proc.wait()
            rc = None
    row["seconds"] = round(time.perf_counter() - t0, 1)
    text = log.read_text(errors="replace")
    if rc is None:
        return {**row, "status": "TIMEOUT", "summary": f"stopped after {timeout:.0f} s; {last_line(text)}"}
    result = out / "steps" / f"{step.id}.json"
    values = json.loads(result.read_text()) if result.is_file() else {}
    if rc != 0:
        return {**row, "status": "FAILED", "values": values, "summary": f"exit {rc}: {last_line(text)}"}
    row["values"], row["summary"] = values, summarize(step.id, values, text, out)
    return row


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "(no output)"


def summarize(step_id: str, v: dict, text: str, out: Path) -> str:
    """The table's one-line result of a finished step."""
    if step_id == "env":
        return (f"torch {v['torch']} (CUDA {v['cuda']}), {v['device']}, C kernels {'yes' if v['native'] else 'no'}, "
                f"python {v['python']}")
    if step_id in ("adversarial", "compiled", "loss_study"):
        text = (f"{v['img_s']:.4g} img/s (batch {v['batch']}, {v['size'][1]}x{v['size'][0]}) = "
                f"{v['fraction_of_matmul']:.2f} of a bf16 matmul ({v['matmul_tflops']:.4g} TFLOP/s); "
                f"{v['gflop_per_img']:.3g} GFLOP/img")
        if step_id != "loss_study":
            text += f"; the loop (D, G on alternate batches) consumes {v['loop_img_s']:.4g} img/s"
        if step_id == "loss_study" or v["device"].startswith("cpu"):
            return text
        return text + f"; target {ADV_TARGET:.0f} img/s {'met' if v['img_s'] >= ADV_TARGET else 'NOT met'}"
    if step_id == "loader_step":
        return (f"{v['img_s']:.0f} img/s, GPU idle {v['gpu_idle_fraction']:.0%} ({v['workers']} loader workers; loader "
                f"alone {v['loader_alone_img_s']:.0f} img/s, updates alone {v['step_alone_img_s']:.0f} img/s)")
    if step_id == "metrics":
        worst = max(v["agree_max_abs"].values())
        val = v["validation_s"]
        dev = next(k for k in val if k != "cpu") if len(val) > 1 else "cpu"
        cpu = f", CPU {val['cpu']['batched']:.0f} s" if dev != "cpu" else ""
        return (f"{'agree' if worst <= 1e-9 else 'DISAGREE'} with the CPU (largest |diff| {worst:.1e}); 5,000-image "
                f"validation pass: {dev} {val[dev]['batched']:.0f} s batched, {val[dev]['per_image']:.0f} s image by "
                f"image{cpu} (EMD's CPU simplex {val[dev]['emd_simplex']:.0f} s of it)")
    if step_id == "pytest_gpu":
        return pytest_counts(out / "steps" / "pytest.xml")
    return last_line(text)


def pytest_counts(xml: Path) -> str:
    if not xml.is_file():
        return "no junit report"
    suite = ET.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return f"{passed} passed, {n['failures'] + n['errors']} failed, {n['skipped']} skipped"


def probe(path: Path) -> None:
    """The environment step: versions, device, whether the C kernels built; written as JSON."""
    import platform

    import torch

    from salnet import native

    cuda = torch.cuda.is_available()
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if cuda else "no CUDA device",
            "native": native.library() is not None,
            "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else 0}
    for mod in ("webdataset", "ot", "scipy", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    print(info)
    path.write_text(json.dumps(info, indent=1) + "\n")


def plan(budget: float, setup_worst: float, plan_steps: list[Step]) -> tuple[bool, str]:
    """The budget plan at worst: gpu_check.sh's setup (``setup_worst`` s: finding a CUDA Python, installing torch
    and the missing packages, each at its cap), then each step as :func:`main` caps it, every step using its whole
    cap, then the archive. Returns (whether it fits the budget with every step that runs getting at least
    MIN_LEFT s, the plan as text)."""
    left = budget - setup_worst - ARCHIVE_S
    lines, fits = [f"budget plan, at worst: setup {setup_worst:.0f} s"], left >= 0
    for i, step in enumerate(plan_steps):
        if step.skip:
            lines.append(f"  {step.id}: {step.skip}")
            continue
        later = sum(1 for s in plan_steps[i + 1:] if not s.skip)
        cap = min(step.cap, left - MIN_LEFT * later)
        fits = fits and cap >= MIN_LEFT
        lines.append(f"  {step.id}: {max(cap, 0):.0f} s (cap {step.cap} s)")
        left -= max(cap, 0)
    total = budget - left
    lines.append(f"archive {ARCHIVE_S} s; total {total:.0f} s of {budget:.0f} s: "
                 + ("fits, every step gets at least its minimum" if fits and total <= budget else "DOES NOT FIT"))
    return fits and total <= budget, "\n".join(lines)


def table(rows: list[dict]) -> str:
    width = max(len(r["label"]) for r in rows)
    lines = [f"{'step':{width}s}  {'status':8s}  {'s':>6s}  result"]
    for r in rows:
        lines.append(f"{r['label']:{width}s}  {r['status']:8s}  {r['seconds']:6.1f}  {r['summary']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check")
    p.add_argument("--budget", type=float, default=470.0, help="seconds for all steps together")
    p.add_argument("--dry", action="store_true", help="CPU, tiny sizes: the code paths in seconds")
    p.add_argument("--osie-recipe", type=Path, help="default jobs/osie_recipe.py (not in a dry run)")
    p.add_argument("--shared", type=Path, help="where the recipe's data and weights lie (default ../shared)")
    p.add_argument("--plan", action="store_true", help="print the budget plan (with --setup-worst) and exit: 1 "
                   "when it does not fit")
    p.add_argument("--setup-worst", type=float, default=0.0, help="gpu_check.sh's setup at worst, seconds")
    p.add_argument("--steps", help="only these steps, comma-separated ids (env,adversarial,...,osie): a rerun of "
                   "the ones that failed in what is left of a device session")
    p.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        probe(args.probe)
        return 0
    out = args.out.resolve()
    osie = args.osie_recipe or (None if args.dry else DEFAULT_RECIPE)
    if args.plan:  # the GPU run's plan: GPU steps, the default recipe
        fits, text = plan(args.budget, args.setup_worst, steps(False, out, args.osie_recipe or DEFAULT_RECIPE,
                                                               args.shared))
        print(text)
        return 0 if fits else 1
    deadline = time.perf_counter() + args.budget
    (out / "steps").mkdir(parents=True, exist_ok=True)
    plan_steps, rows = steps(args.dry, out, osie, args.shared), []
    if args.steps:
        wanted, known = args.steps.split(","), [s.id for s in plan_steps]
        if unknown := [w for w in wanted if w not in known]:
            p.error(f"--steps {args.steps}: no step {', '.join(unknown)} (the steps: {','.join(known)})")
        plan_steps = [s for s in plan_steps if s.id in wanted]
    for i, step in enumerate(plan_steps):
        later = sum(1 for s in plan_steps[i + 1:] if not s.skip)
        left = deadline - time.perf_counter()
        row = run_step(step, min(step.cap, left - MIN_LEFT * later), out)
        rows.append(row)
        log = out / "steps" / f"{step.id}.log"
        if log.is_file():  # the end of its output into this log too (the whole of it stays in steps/)
            print(f"[gpu_check] --- {step.id}: last lines of steps/{step.id}.log ---")
            print("\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL:]))
        print(f"[gpu_check] {row['label']}: {row['status']} in {row['seconds']} s: {row['summary']}", flush=True)
    text = table(rows)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps({"dry": args.dry, "budget_s": args.budget, "rows": rows}, indent=1,
                                                 default=str) + "\n")
    return 0 if all(r["status"] in ("ok", "skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
