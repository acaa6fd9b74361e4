# Backup toolkit: every target bootstraps .venv first, so any of them works
# as the very first command on a machine with python3 and make.
# For a terminal: make exits 2 whenever a task fails, whatever the task's own
# exit code (1, 3, 4, 5 …; it prints it as "Error N"). Cron, scripts and CI
# call .venv/bin/invoke directly, which keeps it (README, "Everyday use").
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INVOKE := $(BIN)/invoke
ARGS ?=

.PHONY: help install backup backups info restore cleanup verify status notify-test push pull db-push db-pull db-backup db-backups db-info db-verify db-restore db-cleanup backup-all drill report test bench clean

help: ## Show this help
	@echo "Usage: make TARGET [ARGS=\"--flag ...\"]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# compat: a plain path entry, not an import hook run at every start-up
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
	@# byte code now, so no run pays for compiling (PYTHONDONTWRITEBYTECODE=1 stops Python writing it)
	@$(BIN)/python -m compileall -q backup_lib tasks.py
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the toolkit and its test tools (idempotent)

backup: $(STAMP) ## Create a project backup (ARGS="--no-compress --dry-run ...")
	@$(INVOKE) backup.create $(ARGS)

backups: $(STAMP) ## List project backups, newest first
	@$(INVOKE) backup.list $(ARGS)

info: $(STAMP) ## Show a backup's metadata: make info BACKUP=path
	@$(INVOKE) backup.info --backup-path "$(BACKUP)" $(ARGS)

restore: $(STAMP) ## Restore a backup: make restore BACKUP=path [TARGET=dir]
	@$(INVOKE) backup.restore --backup-path "$(BACKUP)" $(if $(TARGET),--target-path "$(TARGET)") $(ARGS)

cleanup: $(STAMP) ## Delete old project backups (ARGS="--dry-run --max-backups 10")
	@$(INVOKE) backup.cleanup $(ARGS)

verify: $(STAMP) ## Verify every project backup (or BACKUP=path)
	@$(INVOKE) backup.verify $(if $(BACKUP),--backup-path "$(BACKUP)") $(ARGS)

push: $(STAMP) ## Upload the project backups a remote lacks (ARGS="--remote NAME --dry-run")
	@$(INVOKE) backup.push $(ARGS)

pull: $(STAMP) ## Copy a remote's project backups here (ARGS="--remote NAME")
	@$(INVOKE) backup.pull $(ARGS)

db-push: $(STAMP) ## Upload the database backups a remote lacks
	@$(INVOKE) db.push $(ARGS)

db-pull: $(STAMP) ## Copy a remote's database backups here
	@$(INVOKE) db.pull $(ARGS)

status: $(STAMP) ## Are the backups fresh, complete and verified? (exit 10-13 if not; ARGS="--json")
	@$(INVOKE) backup.status $(ARGS)

notify-test: $(STAMP) ## Send a test message to every configured notification URL
	@$(INVOKE) backup.notify-test $(ARGS)

db-backup: $(STAMP) ## Back up the database (SQLite or PostgreSQL)
	@$(INVOKE) db.backup $(ARGS)

db-backups: $(STAMP) ## List database backups, newest first
	@$(INVOKE) db.list $(ARGS)

db-info: $(STAMP) ## Show a database backup's metadata: make db-info BACKUP=path
	@$(INVOKE) db.info --backup-path "$(BACKUP)" $(ARGS)

db-verify: $(STAMP) ## Verify every database backup (or BACKUP=path)
	@$(INVOKE) db.verify $(if $(BACKUP),--backup-path "$(BACKUP)") $(ARGS)

db-restore: $(STAMP) ## Restore the database: make db-restore BACKUP=path
	@$(INVOKE) db.restore --backup-path "$(BACKUP)" $(ARGS)

db-cleanup: $(STAMP) ## Delete old database backups
	@$(INVOKE) db.cleanup $(ARGS)

backup-all: $(STAMP) ## Back up the database, then the project
	@$(INVOKE) db.backup $(ARGS)
	@$(INVOKE) backup.create $(ARGS)

drill: $(STAMP) ## Restore drills: the newest project backup (drill.command runs in it), then the newest database backup
	@$(INVOKE) backup.drill $(ARGS)
	@$(INVOKE) db.drill $(ARGS)

report: $(STAMP) ## Write the HTML report page (default backups/report.html; ARGS="--output FILE")
	@$(INVOKE) backup.report $(ARGS)

test: $(STAMP) ## Run the test suite
	@$(BIN)/python -m pytest -n 2 -q $(ARGS)

bench: $(STAMP) ## Run the benchmark (a full run writes bench/RESULTS.md; ARGS="--scales a" writes bench/work/)
	@$(BIN)/python bench/run.py $(ARGS)

clean: ## Remove .venv, caches and build leftovers (not backups)
	rm -rf $(VENV) .pytest_cache *.egg-info build bench/work
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
