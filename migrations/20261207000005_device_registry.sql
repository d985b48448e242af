-- The device registry (PUT /api/v1/devices/{id}): a name (the column existed, unused) and
-- free attributes a dispatcher keeps about each device (plate, driver, capacity...).
ALTER TABLE devices
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
