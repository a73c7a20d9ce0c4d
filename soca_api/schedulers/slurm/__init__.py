"""The Slurm backend: PBS job requests run through sbatch, answers read back in PBS terms.

- `adapter`: `SlurmAdapter`, the commands run and their failures read;
- `ids`: API (PBS) job ids <-> Slurm ids;
- `translate`: a JobRequest -> sbatch options;
- `parsers`: the pure parsers of `scontrol show job` and `squeue --json`;
- `arrays`: array index ranges and the "123[]" view of an array's tasks.
"""
from soca_api.schedulers.slurm.adapter import SlurmAdapter

__all__ = ["SlurmAdapter"]
