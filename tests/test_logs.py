"""salnet.logs: INFO from rank 0 only unless every rank is asked for, plain lines, one handler however often set up."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from salnet.logs import captured, get_logger, process_rank, setup_logging

REPO = Path(__file__).resolve().parents[1]
LOG = get_logger("salnet.test")


@pytest.fixture(autouse=True)
def no_rank_env(monkeypatch):
    for var in ("RANK", "SLURM_PROCID", "WORLD_SIZE", "SLURM_NTASKS", "SALNET_LOG_ALL_RANKS", "SALNET_LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)


def test_rank_0_prints_info_to_stdout_and_warnings_to_stderr(capsys):
    setup_logging()
    LOG.info("epoch %d done", 3)
    LOG.debug("not shown at INFO")
    LOG.warning("disk almost full")
    out, err = capsys.readouterr()
    assert out == "epoch 3 done\n" and err == "warning: disk almost full\n"


def test_other_ranks_only_warn_unless_every_rank_is_asked_for(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    setup_logging()
    LOG.info("rank 1's epoch line")
    LOG.error("rank 1 failed")
    assert capsys.readouterr() == ("", "error: rank 1 failed\n")
    setup_logging(all_ranks=True)
    LOG.info("now every rank")
    assert capsys.readouterr().out == "[rank 1] now every rank\n"
    monkeypatch.setenv("SALNET_LOG_ALL_RANKS", "1")
    setup_logging(rank=1)
    LOG.info("by the environment")
    assert capsys.readouterr().out == "[rank 1] by the environment\n"


def test_setup_twice_gives_one_line_and_the_level_from_the_environment(capsys, monkeypatch):
    setup_logging()
    setup_logging()
    LOG.info("once")
    assert capsys.readouterr().out == "once\n"
    monkeypatch.setenv("SALNET_LOG_LEVEL", "debug")
    setup_logging()
    LOG.debug("details")
    assert capsys.readouterr().out == "details\n"
    with pytest.raises(ValueError, match="not a logging level"):
        setup_logging(level="chatty")


def test_the_process_group_rank_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert process_rank() == 1
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0, world_size=1)
    try:
        assert process_rank() == 0
    finally:
        dist.destroy_process_group()


def test_captured_collects_without_setup_and_restores_the_level():
    logger = logging.getLogger("salnet")
    before = logger.level
    with captured() as lines:
        LOG.info("a %s line", "captured")
    LOG.info("after the block")
    assert lines == ["a captured line"] and logger.level == before


def test_two_processes_one_epoch_line():
    """Two real processes told their rank as torchrun tells it: only rank 0's INFO line is printed."""
    code = ("import sys; from salnet.logs import get_logger, setup_logging; setup_logging(); "
            "get_logger('salnet.x').info('hello from rank %s', sys.argv[1])")
    outs = []
    for rank in ("0", "1"):
        env = {**os.environ, "RANK": rank, "WORLD_SIZE": "2"}
        env.pop("SALNET_LOG_ALL_RANKS", None)
        outs.append(subprocess.run([sys.executable, "-c", code, rank], env=env, cwd=REPO, capture_output=True,
                                   text=True, timeout=60, check=True).stdout)
    assert outs == ["hello from rank 0\n", ""]
