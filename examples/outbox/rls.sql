-- Row-level security on the outbox (docs/outbox.md). Run as the role that
-- ran `sluice outbox init` (the table's owner, which the relay uses):
--   psql "$DATABASE_URL" -v app_role=app -v relay_role=sluice_relay -f rls.sql

-- The application's role inserts, and only rows of the tenant its
-- transaction acts for (SELECT set_config('app.tenant_id', <uuid>, true),
-- i.e. SET LOCAL). It needs neither SELECT nor DELETE.
GRANT INSERT ON sluice_outbox TO :"app_role";
GRANT USAGE ON SEQUENCE sluice_outbox_id_seq TO :"app_role";
ALTER TABLE sluice_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE sluice_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY outbox_tenant_insert ON sluice_outbox FOR INSERT TO :"app_role"
    WITH CHECK (split_part(channel, ':', 2) = current_setting('app.tenant_id', true));

-- The relay's role owns the table; under FORCE it is subject to policies
-- too (unless it has BYPASSRLS): it reads, numbers and deletes every
-- tenant's rows.
CREATE POLICY outbox_relay ON sluice_outbox FOR ALL TO :"relay_role"
    USING (true) WITH CHECK (true);
