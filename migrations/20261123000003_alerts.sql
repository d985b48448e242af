-- geotrack schema, part 3: fence evaluation state and alerts.
--
-- The evaluator of each ingest shard turns committed fixes into alerts. Everything it knows
-- commits in one transaction with the alerts it produced, so after a crash it resumes from
-- the stored watermark with the stored states and neither loses nor doubles an alert.

-- Alerts. `id` is the cursor subscribers resume from: one writer per node inserts them and
-- publishes them in id order after commit. `fence` is NULL for device-level alerts (offline);
-- it is not a foreign key, so the history outlives a deleted fence.
CREATE TABLE alerts (
    id           bigserial   PRIMARY KEY,
    device       text        NOT NULL,
    fence        text,
    fence_name   text,
    kind         text        NOT NULL CHECK (kind IN ('enter', 'exit', 'dwell', 'overspeed', 'offline')),
    ts           timestamptz NOT NULL,
    geom         geometry(Point, 4326),
    speed_mps    double precision,
    interpolated boolean     NOT NULL DEFAULT false,
    -- When the fix that caused the alert reached the server (NULL for timer alerts).
    received_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_device_id ON alerts (device, id);
CREATE INDEX alerts_fence_id ON alerts (fence, id);

-- How far each shard's evaluator has got in the positions outbox (positions.shard, seq).
CREATE TABLE eval_watermarks (
    shard smallint PRIMARY KEY,
    seq   bigint   NOT NULL
);

-- The (device, fence) pairs whose device is inside the fence. Outside is the default and is
-- not stored; the device's last evaluated fix is read back from `positions` when needed.
CREATE TABLE fence_states (
    device          text        NOT NULL,
    fence           text        NOT NULL,
    shard           smallint    NOT NULL,
    entered_at      timestamptz NOT NULL,
    dwell_fired     boolean     NOT NULL DEFAULT false,
    overspeed_fired boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (device, fence)
);
CREATE INDEX fence_states_shard ON fence_states (shard);

-- Devices an `offline` alert was sent for; the row goes when the device reports again.
CREATE TABLE offline_devices (
    device text        PRIMARY KEY,
    since  timestamptz NOT NULL
);

-- Webhook deliveries: one row per (alert, URL), written with the alert, so a delivery is
-- never lost; retried with backoff until delivered or given up (at least once: receivers
-- de-duplicate by alert id).
CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    alert_id        bigint      NOT NULL,
    url             text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
