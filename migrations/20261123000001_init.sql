-- geotrack schema, part 1: devices, position history, live positions.
--
-- PostGIS is not a trusted extension, so this needs a superuser (scripts/ensure-postgis.sh also
-- installs it into template1, which makes this line a no-op for databases created afterwards).
CREATE EXTENSION IF NOT EXISTS postgis;

-- Every device ever seen. Rows are added by the ingest writer the first time a device reports.
CREATE TABLE devices (
    id         text PRIMARY KEY,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Draws the evaluation cursor of each stored fix (see positions.seq).
CREATE SEQUENCE positions_seq AS bigint;

-- Position history. One row per (device, fix time): a re-sent fix is dropped, not duplicated.
--
-- (shard, seq) is the evaluation outbox: each shard has exactly one writer, which assigns seq
-- inside its batch transaction, so within a shard seq grows in commit order and "every fix of
-- shard s with seq > watermark" is exactly the work an evaluator has not done yet.
-- The primary key serves per-device track queries; BRIN indexes on ts and seq stay tiny on a
-- billion rows because both columns follow insertion order.
CREATE TABLE positions (
    device      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    geom        geometry(Point, 4326) NOT NULL,
    speed_mps   double precision,
    heading_deg double precision,
    accuracy_m  double precision,
    altitude_m  double precision,
    battery     double precision,
    attrs       jsonb,
    received_at timestamptz      NOT NULL,
    shard       smallint         NOT NULL,
    seq         bigint           NOT NULL DEFAULT nextval('positions_seq'),
    PRIMARY KEY (device, ts)
);
CREATE INDEX positions_ts_brin ON positions USING brin (ts);
CREATE INDEX positions_seq_brin ON positions USING brin (seq);

-- The newest fix of each device. Updated in place for every batch, so it has no index but the
-- primary key and leaves free space in each page: updates stay HOT (no index maintenance).
-- A GiST index on geom would make every update non-HOT; add one only when measured to pay off.
CREATE TABLE devices_latest (
    device      text             PRIMARY KEY,
    ts          timestamptz      NOT NULL,
    geom        geometry(Point, 4326) NOT NULL,
    speed_mps   double precision,
    heading_deg double precision,
    accuracy_m  double precision,
    altitude_m  double precision,
    battery     double precision,
    attrs       jsonb,
    received_at timestamptz      NOT NULL
) WITH (fillfactor = 70);
