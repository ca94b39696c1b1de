"""Publish through the Sluice outbox with psycopg 3.

The event is inserted in the same transaction as the change it announces:
both commit, or neither. Run with DATABASE_URL, TENANT and SCAN set.
"""
import os

import psycopg
from psycopg.types.json import Jsonb


def publish(conn, channel, event, data):
    """Queue an event in the connection's current transaction."""
    conn.execute(
        "INSERT INTO sluice_outbox (channel, event, data) VALUES (%s, %s, %s)",
        (channel, event, Jsonb(data)),
    )


def set_progress(conn, tenant, scan, progress):
    with conn.transaction():
        # SET LOCAL for row-level security: the tenant this transaction acts for.
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
        conn.execute("UPDATE scans SET progress = %s WHERE id = %s", (progress, scan))
        publish(conn, f"scan-progress:{tenant}:{scan}", "scan.progress",
                {"scan": scan, "progress": progress})


with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    tenant, scan = os.environ["TENANT"], int(os.environ["SCAN"])
    set_progress(conn, tenant, scan, 40)
    try:
        with conn.transaction():
            publish(conn, f"scan-progress:{tenant}:{scan}", "scan.progress", {"progress": 999})
            raise RuntimeError("the scan failed: this transaction and its event roll back")
    except RuntimeError:
        pass
