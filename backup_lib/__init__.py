"""backup_lib: project and SQLite backups as standard, self-describing archives."""
__version__ = "0.1.0"
