-- Sluice outbox (protocol.md §7, docs/outbox.md). `sluice outbox init` runs this
-- file with sluice_outbox replaced by SLUICE_OUTBOX_TABLE; it may be run
-- again (every statement is idempotent). Run it as the role that will own
-- the table: the relay's role, or a role whose grants docs/outbox.md lists.

-- The outbox. An application inserts channel, event and data in the same
-- transaction as its own changes; every other column has a default.
CREATE TABLE IF NOT EXISTS sluice_outbox (
    id         bigserial   PRIMARY KEY,
    channel    text        NOT NULL,
    event      text        NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Commit order: set by sluice_outbox_commit() while the inserting
    -- transaction commits; NULL only until then. The relay publishes in
    -- this order (ids are handed out at insert, not at commit).
    seq        bigint
);

-- Every row is inserted, numbered and deleted: dead rows pile up fast, and
-- the relay's index scan on seq walks over them until they are vacuumed.
-- Vacuum this table after every few thousand rows, whatever its size
-- (takes effect only where autovacuum is on).
ALTER TABLE sluice_outbox SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);

-- Not owned by a column: TRUNCATE … RESTART IDENTITY leaves it alone.
CREATE SEQUENCE IF NOT EXISTS sluice_outbox_seq;

CREATE INDEX IF NOT EXISTS sluice_outbox_seq_idx ON sluice_outbox (seq);

-- Rows the relay refused (invalid like a refused POST /publish), with why.
CREATE TABLE IF NOT EXISTS sluice_outbox_dead (
    id         bigint      PRIMARY KEY,
    channel    text        NOT NULL,
    event      text        NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    reason     text        NOT NULL
);

-- Runs for each inserted row when its transaction commits (a deferred
-- constraint trigger): under one transaction-scoped advisory lock (per
-- outbox table, named by its oid), held until the commit is visible, it numbers the row and wakes the relay. So
-- seq order is commit order, and whatever a reader sees of the outbox is
-- always a prefix of it in seq order.
CREATE OR REPLACE FUNCTION sluice_outbox_commit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sluice outbox commit'), hashtext(TG_RELID::text));
    UPDATE sluice_outbox SET seq = nextval('sluice_outbox_seq') WHERE id = NEW.id;
    PERFORM pg_notify('sluice_outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS sluice_outbox_commit ON sluice_outbox;
CREATE CONSTRAINT TRIGGER sluice_outbox_commit
    AFTER INSERT ON sluice_outbox
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION sluice_outbox_commit();

-- Groups of rows the relay is publishing: each is published as one batch
-- under its key, recorded before it is published, so that a relay that
-- dies before deleting the rows is followed by one that publishes the same
-- rows under the same key (which publishes nothing again).
CREATE TABLE IF NOT EXISTS sluice_outbox_inflight (
    key       text     PRIMARY KEY,
    first_seq bigint   NOT NULL,
    ids       bigint[] NOT NULL,
    per_row   boolean  NOT NULL DEFAULT false
);
