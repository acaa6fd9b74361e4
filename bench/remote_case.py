"""One remote case of the benchmark, as a whole process (Python and boto3
start-up included), against an S3 endpoint:

    python bench/remote_case.py push   ENDPOINT BUCKET BACKUP_DIR PART_SIZE CONCURRENCY
    python bench/remote_case.py upload ENDPOINT BUCKET FILE PART_SIZE CONCURRENCY
    python bench/remote_case.py list   ENDPOINT BUCKET NAME CACHE_DIR

``push`` is ours (the library's push of every backup in BACKUP_DIR);
``upload`` is a bare boto3 ``upload_file`` of one file with the same
transfer settings (TransferConfig: threshold and part size, concurrency; a
SHA-256 per part; the same client configuration); ``list`` lists a
project's backups on the remote from their indexes.  The tasks are not
wired yet: when they are, these become ``invoke backup.push`` and
``invoke backup.list --remote``.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def client_config(concurrency: int):
    """The botocore configuration ours uses (S3Storage._make_client)."""
    from botocore.config import Config

    return Config(max_pool_connections=max(16, concurrency + 8), retries={"mode": "standard"},
                  s3={"payload_signing_enabled": False})


def main(argv: list[str]) -> None:
    what, endpoint, bucket = argv[:3]
    if what == "push":
        from backup_lib.remote import push, remote_from_config
        from backup_lib.store import BackupStore

        backup_dir, part, conc = argv[3], int(argv[4]), int(argv[5])
        remote = remote_from_config("bench", {"url": f"s3://{bucket}/ours", "endpoint_url": endpoint, "part_size": part,
                                              "multipart_threshold": part, "max_concurrency": conc}, cache_dir=None)
        result = push(BackupStore(backup_dir, "project"), remote)
        if not result.done:
            raise SystemExit("nothing was pushed")
    elif what == "upload":
        import boto3
        from boto3.s3.transfer import TransferConfig

        path, part, conc = argv[3], int(argv[4]), int(argv[5])
        s3 = boto3.client("s3", endpoint_url=endpoint, config=client_config(conc))
        s3.upload_file(path, bucket, f"bare/{os.path.basename(path)}",
                       Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=conc),
                       ExtraArgs={"ChecksumAlgorithm": "SHA256"})
    elif what == "list":
        from backup_lib.remote import list_remote, remote_from_config

        name, cache = argv[3], argv[4]
        remote = remote_from_config("bench", {"url": f"s3://{bucket}/list", "endpoint_url": endpoint}, cache_dir=cache)
        rows = list_remote(remote, name, "project")
        if len(rows) != 200 or any("error" in r for r in rows):
            raise SystemExit(f"listed {len(rows)} backups, {sum('error' in r for r in rows)} with errors")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
