#!/bin/sh
# One night's backups in the app's container (compose.yaml's backup service).
# It stops at the first failure, with the toolkit's own exit code, which
# `docker compose run` passes on to the host's cron.
set -e
invoke db.backup backup.create   # the database, then the project
invoke db.verify backup.verify   # every backup on the volume, before cleanup deletes any
invoke db.cleanup backup.cleanup
invoke backup.status             # exit 10-13 when the backups need attention
