"""Running salnet on a cluster: the one part of salnet that imports submitit or Ray (a test checks it).

    salnet.run.launch      jobs/launch.py: a sweep or one run on Slurm, on this machine, or in this process
    salnet.run.driver      a sweep's driver (Ray Tune in a private Ray head), as a Slurm job or in-process
    salnet.run.tuner       the Tune side: one Trainable per trial, each trial a submitit training job
    salnet.run.jobs        the submitit jobs: TrainJob (checkpointable DDP training), EvaluateJob
    salnet.run.submission  executors from JobResources, job records (find, query, cancel a job)
    salnet.run.slurm       what the Slurm cluster says: partitions (sinfo), job states (sacct)
    salnet.run.ray_head    a private Ray head per sweep (its own ports and temp dir, loopback only)
    salnet.run.evaluate, status, cancel, train, pack, demo      the other scripts' work

The scripts in jobs/ parse their arguments and call these. The sweep folder's files are read and written by
:class:`salnet.sweeps.folder.SweepFolder` (pure, shared with salnet.sweeps.summary). Importing this package imports
nothing: Ray's environment (no usage stats, loopback, no auth token) is set where Ray is started
(:class:`salnet.run.ray_head.RayHead`), not at import.
"""


class LaunchError(RuntimeError):
    """Bad arguments or a missing input, found before anything is submitted; the message says what to do."""
