"""The planted-bug check: apply each realistic bug below, one at a time, to a copy of the working tree, run only the
tests that guard that code, and report it caught (a test failed) or missed (they all passed).

    .venv/bin/python tests/mutants/run.py            # all; exit status 0 only when every bug is caught
    .venv/bin/python tests/mutants/run.py --list     # the bugs and their tests
    .venv/bin/python tests/mutants/run.py d-step-swapped nss-std-n   # some of them

The copy holds the files git tracks or would track (``git ls-files -co --exclude-standard``) as they are in the
working tree, with ``../shared`` linked next to it; tests run there with ``-x -q -n 0``. The guarding tests first
run once unmutated (``--no-baseline`` skips that): a failure there stops the check (a bug cannot be caught by a
test that already fails). A bug whose text is no longer in its file is reported stale (the code moved on: update
its entry), which also fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


DDP_TEST = "tests/test_train_ddp.py::test_two_ranks_train_as_one_process_on_the_global_batch"
STEP_TESTS = ("tests/test_adversarial_step.py",)
BY_HAND = ("tests/test_metrics_by_hand.py",)

MUTANTS = [
    # ---- the bugs issue 35 names
    Mutant("ddp-no-g-allreduce", "G not wrapped in DDP: each rank steps on its own gradients",
           "salnet/train/loop.py", "self.g_train = DDP(self.G) if self.env.distributed else self.G",
           "self.g_train = self.G", (DDP_TEST,)),
    Mutant("d-step-swapped", "the D step passes (fake, real) to the D loss",
           "salnet/train/steps.py", "discriminator_loss(real_out.logits.float(), fake_out.logits.float())",
           "discriminator_loss(fake_out.logits.float(), real_out.logits.float())", STEP_TESTS),
    Mutant("g-alpha-on-adversarial", "G loss content + α·adv instead of α·content + adv",
           "salnet/train/steps.py", "total = alpha * content + adv", "total = content + alpha * adv", STEP_TESTS),
    Mutant("resume-no-rng-restore", "resume skips restoring the RNG states",
           "salnet/train/loop.py", "            set_rng_state(self._rng_after_skip)\n", "            pass\n",
           ("tests/test_resume_random.py",)),
    Mutant("auc-grid-without-max", "AUC-Borji/sAUC thresholds 0:0.1:max without max",
           "salnet/metrics/auc.py", "k = torch.arange(n + 1, dtype=dtype)", "k = torch.arange(n, dtype=dtype)",
           BY_HAND),
    Mutant("auc-judd-off-by-one", "AUC-Judd's tp counts from 0",
           "salnet/metrics/auc.py", "i = torch.arange(1, F + 1, device=S.device)[None, :]",
           "i = torch.arange(0, F, device=S.device)[None, :]", BY_HAND),
    Mutant("nss-std-n", "NSS standardised with std N instead of N − 1",
           "salnet/metrics/distribution.py", 'maps.std("pred", 1 if variant == "mit" else 0)',
           'maps.std("pred", 0)', BY_HAND),
    Mutant("d-labels-swapped", "D's labels swapped inside discriminator_loss",
           "salnet/losses/combine.py",
           "labels = torch.cat([torch.ones_like(d_real_logits), torch.zeros_like(d_fake_logits)])",
           "labels = torch.cat([torch.zeros_like(d_real_logits), torch.ones_like(d_fake_logits)])", STEP_TESTS),
    Mutant("loader-drops-a-batch", "the training loader yields one batch less per epoch",
           "salnet/data/loader.py",
           "self.batches = total * self.cfg.passes // (self.world_size * self.cfg.batch_size)",
           "self.batches = total * self.cfg.passes // (self.world_size * self.cfg.batch_size) - 1",
           ("tests/test_data_loader.py::test_two_ranks_two_workers_cover_an_epoch_disjointly",)),
    # ---- more of the same kinds
    Mutant("g-step-fake-detached", "G's adversarial term sees a detached Ŝ: D gives G no gradient",
           "salnet/train/steps.py", "D(out.prob, batch[\"image\"])", "D(out.prob.detach(), batch[\"image\"])",
           STEP_TESTS),
    Mutant("d-acc-fake-sign", "D/acc_fake counts fakes D calls real",
           "salnet/train/steps.py", "(fake_out.logits < 0).float()", "(fake_out.logits > 0).float()", STEP_TESTS),
    Mutant("adagrad-eps-outside-root", "Lasagne Adagrad with ε after the root, as torch's",
           "salnet/train/optim.py",
           '            denom = torch._foreach_add(sums, group["eps"])\n            torch._foreach_sqrt_(denom)\n',
           '            denom = torch._foreach_sqrt(sums)\n            torch._foreach_add_(denom, group["eps"])\n',
           ("tests/test_recipe.py::test_lasagne_adagrad_steps_as_the_released_formula",)),
    Mutant("sauc-fp-over-fixations", "sAUC's fp divided by the fixations instead of the negatives drawn",
           "salnet/metrics/auc.py",
           "auc = _stepped_auc(positive_counts, n_fixated, negative_counts, n_negatives, n_splits, thresholds)",
           "auc = _stepped_auc(positive_counts, n_fixated, negative_counts, n_fixated, n_splits, thresholds)",
           BY_HAND),
    Mutant("emd-negative-cells-clipped", "EMD clips negative cells instead of moving them as demand",
           "salnet/metrics/emd.py", "    d = p - q\n", "    d = np.clip(p, 0, None) - np.clip(q, 0, None)\n",
           BY_HAND),
    Mutant("val-no-allreduce", "validation sums not all-reduced across ranks",
           "salnet/train/validate.py",
           "sums, counts = all_reduce_sum(sums.to(device)).cpu(), all_reduce_sum(counts.to(device)).cpu()",
           "sums, counts = sums.cpu(), counts.cpu()", ("tests/test_train_ddp.py::test_two_ranks_equal_one",)),
    Mutant("upload-maps-bilinear", "predicted maps resized to the stimulus bilinearly, not with MATLAB's bicubic",
           "salnet/models/postprocess.py", 'blur5(imresize(prob, size, "bicubic"))',
           'blur5(imresize(prob, size, "bilinear"))',
           ("tests/test_benchmark_formats.py::test_uploaded_maps_are_the_known_maps_resized_independently",)),
]


def copy_tree(dest: Path) -> Path:
    """The working tree's files (tracked or trackable, as they are now) under ``dest/tree``; ``dest/shared`` links
    to ``../shared`` when it exists (tests/helpers.py looks for it next to the repository)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    tree = dest / "tree"
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / rel)
    if (REPO.parent / "shared").exists():
        (dest / "shared").symlink_to(REPO.parent / "shared")
    return tree


def pytest(tree: Path, tests: tuple[str, ...] | list[str]) -> tuple[int, str, float]:
    """Run ``tests`` in ``tree`` (its salnet first on the path); (exit status, output, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "SALNET_NO_SLURM": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
                          "--timeout", "300", *tests], cwd=tree, env=env, capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr, time.perf_counter() - t0


def first_failure(output: str) -> str:
    return next((ln.removeprefix("FAILED ")[:110] for ln in output.splitlines() if ln.startswith("FAILED ")), "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their tests")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the unmutated run (where the same tests have just passed, as in CI after the suite)")
    args = ap.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        ap.error(f"no mutant(s) {sorted(unknown)}; --list shows them")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name:28s} {m.file}: {m.what}\n{'':28s} tests: {' '.join(m.tests)}")
        return 0
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="salnet-mutants-") as tmp:
        tree = copy_tree(Path(tmp))
        guards = list(dict.fromkeys(t for m in chosen for t in m.tests))
        if not args.no_baseline:
            rc, out, took = pytest(tree, guards)
            if rc != 0:
                print(f"the guarding tests fail without any planted bug ({took:.0f} s):\n{out[-3000:]}")
                return 2
            print(f"unmutated: {len(guards)} test selections pass ({took:.0f} s)")
        results = []
        for m in chosen:
            path = tree / m.file
            text = path.read_text()
            if text.count(m.old) != 1:
                results.append("stale")
                print(f"STALE   {m.name:28s} its text is {'gone from' if m.old not in text else 'ambiguous in'} "
                      f"{m.file}")
                continue
            path.write_text(text.replace(m.old, m.new))
            try:
                rc, out, took = pytest(tree, m.tests)
            finally:
                path.write_text(text)
            status = {0: "missed", 1: "caught"}.get(rc, "error")
            results.append(status)
            detail = first_failure(out) if rc == 1 else out[-1500:] if rc != 0 else "every guarding test passed"
            print(f"{status.upper():7s} {m.name:28s} {took:5.1f} s  {detail}")
    caught = results.count("caught")
    print(f"{caught} of {len(results)} planted bugs caught in {time.perf_counter() - t_start:.0f} s")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
