"""Publish through the Sluice outbox from Django (see sluice_outbox.py).

Run with DATABASE_HOST, DATABASE_PORT, DATABASE_USER, DATABASE_NAME,
DATABASE_OPTIONS (e.g. -c search_path=app), TENANT and SCAN set; a real
project has its own settings instead of configure().
"""
import os

import django
from django.conf import settings

settings.configure(DATABASES={"default": {
    "ENGINE": "django.db.backends.postgresql",
    "HOST": os.environ["DATABASE_HOST"], "PORT": os.environ["DATABASE_PORT"],
    "USER": os.environ["DATABASE_USER"], "NAME": os.environ["DATABASE_NAME"],
    "OPTIONS": {"options": os.environ.get("DATABASE_OPTIONS", "")},
}}, USE_TZ=True)
django.setup()

from django.db import connection, transaction  # noqa: E402

from sluice_outbox import OutboxEvent  # noqa: E402

tenant, scan = os.environ["TENANT"], int(os.environ["SCAN"])

with transaction.atomic():
    with connection.cursor() as cur:
        # SET LOCAL for row-level security: the tenant this transaction acts for.
        cur.execute("SELECT set_config('app.tenant_id', %s, true)", [tenant])
        cur.execute("UPDATE scans SET progress = 40 WHERE id = %s", [scan])
    OutboxEvent.objects.publish(f"scan-progress:{tenant}:{scan}", "scan.progress",
                                {"scan": scan, "progress": 40})

try:
    with transaction.atomic():
        OutboxEvent.objects.publish(f"scan-progress:{tenant}:{scan}", "scan.progress", {"progress": 999})
        raise RuntimeError("the scan failed: this transaction and its event roll back")
except RuntimeError:
    pass
