"""The Sluice outbox as a Django model.

OutboxEvent.objects.publish(channel, event, data) inside
transaction.atomic() queues the event with the changes it announces: Sluice
publishes it once the transaction commits, never if it rolls back. The table
is created by `sluice outbox init`, not by Django's migrations.
"""
from django.db import models, transaction


class OutboxManager(models.Manager):
    def publish(self, channel, event, data):
        """Queue an event in the current transaction (use inside transaction.atomic())."""
        if not transaction.get_connection(self.db).in_atomic_block:
            raise RuntimeError("publish inside transaction.atomic(), with the changes the event announces")
        self.create(channel=channel, event=event, data=data)


class OutboxEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    channel = models.TextField()
    event = models.TextField()
    data = models.JSONField()

    objects = OutboxManager()

    class Meta:
        app_label = "sluice_outbox"
        db_table = "sluice_outbox"
        managed = False  # created by `sluice outbox init`
