-- Position history partitioned by week of the fix time, so old history is dropped a partition
-- at a time (retention) instead of by DELETE, and queries over a time range read only the weeks
-- they need. Weekly: a year is 53 partitions, few enough for the planner, small enough to drop.
--
-- `positions_default` holds what falls outside every weekly partition: a week in the past gets
-- its partition when fixes land in the default one for it (a late upload, an import), and the
-- server's upkeep (`tracker::history`) then moves them there; weeks ahead are made in advance;
-- weeks past `history.retention_days` are dropped. So partitions exist only for weeks that
-- hold fixes. This migration makes the current weeks, and those of the stored fixes.
ALTER TABLE positions RENAME TO positions_unpartitioned;
ALTER INDEX positions_pkey RENAME TO positions_unpartitioned_pkey;
ALTER INDEX positions_ts_brin RENAME TO positions_unpartitioned_ts_brin;
ALTER INDEX positions_seq_brin RENAME TO positions_unpartitioned_seq_brin;

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
) PARTITION BY RANGE (ts);
CREATE INDEX positions_ts_brin ON positions USING brin (ts);
CREATE INDEX positions_seq_brin ON positions USING brin (seq);
CREATE TABLE positions_default PARTITION OF positions DEFAULT;

-- The weeks that hold stored fixes (up to 54 weeks back; older ones stay in the default
-- partition) and this week to 4 weeks ahead, each named by the Monday (UTC) it starts on.
DO $$
DECLARE
    week timestamp;
BEGIN
    FOR week IN
        SELECT DISTINCT date_trunc('week', ts AT TIME ZONE 'UTC') FROM positions_unpartitioned
        WHERE ts >= now() - interval '54 weeks'
        UNION
        SELECT generate_series(date_trunc('week', now() AT TIME ZONE 'UTC'),
                               date_trunc('week', now() AT TIME ZONE 'UTC') + interval '4 weeks',
                               interval '1 week')
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                       'positions_p' || to_char(week, 'YYYYMMDD'),
                       week AT TIME ZONE 'UTC', (week + interval '1 week') AT TIME ZONE 'UTC');
    END LOOP;
END $$;

INSERT INTO positions SELECT * FROM positions_unpartitioned;
DROP TABLE positions_unpartitioned;
