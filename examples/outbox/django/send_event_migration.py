"""Moving a send_event call to the outbox (docs/guide.md)."""
from django.db import transaction

from sluice_outbox import OutboxEvent


def before(scan, tenant, send_event):
    # Published even if the transaction later rolls back; lost if the
    # process dies between the save and the call.
    scan.save()
    send_event(f"scan-progress:{tenant}:{scan.id}", "scan.progress", {"progress": scan.progress})


def after(scan, tenant):
    # Committed with the scan, or not at all; Sluice publishes it once.
    with transaction.atomic():
        scan.save()
        OutboxEvent.objects.publish(f"scan-progress:{tenant}:{scan.id}", "scan.progress", {"progress": scan.progress})
