"""The dashboard's widgets: each renders one daemon record, and nothing else."""
