"""Workflow glue between Snakemake and the replication: provenance records, downloads,
logging, the helpers that read a job's wildcards and params, and the `coar` command.
"""
