-- Proximity alerts (dispatch::roam): rules watching devices against other devices, the pairs
-- of each rule that are near, and the alerts they fire (`near`, `apart`) in the alert log.

-- A rule's sides are kept in the API's notation: "all", or a list of device ids, `prefix*` and
-- `group:ID` entries. Read whole into memory by every server (NOTIFY geotrack_proximity).
CREATE TABLE proximity_rules (
    id           text             PRIMARY KEY,
    name         text             NOT NULL DEFAULT '',
    devices      jsonb            NOT NULL,
    near         jsonb            NOT NULL,
    radius_m     double precision NOT NULL CHECK (radius_m > 0),
    hysteresis_m double precision NOT NULL DEFAULT 0 CHECK (hysteresis_m >= 0),
    updated_at   timestamptz      NOT NULL DEFAULT now()
);

-- The pairs that are near (apart is the default and is not stored), written by the alert
-- writer in the transaction of the alert that made them near, deleted with the one that made
-- them apart. Not a foreign key to the rules: the evaluator drops the pairs of a deleted rule.
CREATE TABLE proximity_pairs (
    rule   text        NOT NULL,
    device text        NOT NULL,
    other  text        NOT NULL,
    since  timestamptz NOT NULL,
    PRIMARY KEY (rule, device, other)
);
CREATE INDEX proximity_pairs_device ON proximity_pairs (device);
CREATE INDEX proximity_pairs_other ON proximity_pairs (other);

-- Proximity alerts name the rule, the other device and their distance; fence alerts leave the
-- three NULL.
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('enter', 'exit', 'dwell', 'overspeed', 'offline', 'near', 'apart'));
ALTER TABLE alerts
    ADD COLUMN rule         text,
    ADD COLUMN other_device text,
    ADD COLUMN distance_m   double precision;
-- Erasing a device erases the alerts that name it on either side.
CREATE INDEX alerts_other_device_id ON alerts (other_device, id) WHERE other_device IS NOT NULL;
