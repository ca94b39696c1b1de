-- Publish scan.progress together with the change it announces: both
-- commit, or neither. Run: psql "$DATABASE_URL" -v tenant=<uuid> -v scan=7 -f publish.sql
BEGIN;
-- SET LOCAL for row-level security: the tenant this transaction acts for.
SELECT set_config('app.tenant_id', :'tenant', true);
UPDATE scans SET progress = 40 WHERE id = :scan;
INSERT INTO sluice_outbox (channel, event, data)
VALUES ('scan-progress:' || :'tenant' || ':' || :'scan', 'scan.progress',
        jsonb_build_object('scan', :scan, 'progress', 40));
COMMIT;

-- A transaction that rolls back publishes nothing.
BEGIN;
SELECT set_config('app.tenant_id', :'tenant', true);
UPDATE scans SET progress = 999 WHERE id = :scan;
INSERT INTO sluice_outbox (channel, event, data)
VALUES ('scan-progress:' || :'tenant' || ':' || :'scan', 'scan.progress', '{"progress": 999}');
ROLLBACK;
