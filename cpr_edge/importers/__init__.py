"""Importers: checkpoints written by other code, turned into cpr-edge checkpoints (docs/import.md)."""
