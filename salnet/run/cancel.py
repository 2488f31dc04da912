"""Cancel everything a sweep started: its driver, every open trial's job, the final evaluation."""

from __future__ import annotations

from salnet.logs import get_logger
from salnet.run.submission import cancel_record
from salnet.sweeps.folder import OPEN_TRIAL_STATES, SweepFolder

log = get_logger(__name__)


def cancel_sweep(folder: SweepFolder) -> list[str]:
    """Cancel the driver first (so it submits nothing more), then every job of a trial still pending or running
    (the trial is marked ``cancelled``; its run folder stays) and the evaluation. Returns the ids a cancel was
    sent to."""
    state = folder.read_state()
    sent = []
    if state.driver is not None and cancel_record(state.driver):
        sent.append(state.driver.id)
    records, unreadable = folder.read_trials()
    for rec in records:
        if rec.status in OPEN_TRIAL_STATES:
            sent += [job.id for job in rec.jobs if cancel_record(job)]
            folder.update_trial(rec.trial, status="cancelled")
    for error in unreadable.values():  # its jobs are unknown: say so rather than stop half-way
        log.warning(f"{error}; its job, if any, was not cancelled (cancel it by hand: squeue --me)")
    if state.evaluation is not None and cancel_record(state.evaluation):
        sent.append(state.evaluation.id)
    folder.update_state(status="cancelled")
    return sent
