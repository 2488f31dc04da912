"""salnet: saliency models, losses, metrics, data and training for HPC batch jobs."""

__version__ = "0.1.0"
