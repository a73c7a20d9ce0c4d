"""The Slurm backend: PBS job requests run through sbatch, answers read back in PBS terms."""
from soca_api.schedulers.slurm.adapter import SlurmAdapter

__all__ = ["SlurmAdapter"]
