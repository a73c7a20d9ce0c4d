"""The PBS backend: OpenPBS / PBS Pro, Torque and Slurm's Torque wrappers through their
command-line tools.

- `adapter`: `PbsAdapter`, the commands run and their failures read;
- `qstat`: the pure parser of what qstat prints, in both dialects;
- `ids`: the API's job ids and qsub's answer;
- `translate`: a JobRequest -> the qsub options beyond the script's own directives.
"""
from soca_api.schedulers.pbs.adapter import PbsAdapter

__all__ = ["PbsAdapter"]
