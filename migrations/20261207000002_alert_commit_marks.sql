-- Exactly-once alert commits across a lost connection. A COMMIT whose answer never arrives (the
-- connection dropped at that moment) may have committed or not; retrying it blindly would store
-- its alerts twice. Each alert writer (one per process) upserts its row here in the
-- transaction that stores alerts, naming the commit and the ids it drew; before retrying, it
-- reads its row: if the commit is there, it happened, and its alerts are read back instead.
-- One row per writer process, pruned by the server's upkeep.
CREATE TABLE alert_commit_marks (
    writer      text        PRIMARY KEY,
    commit_id   bigint      NOT NULL,
    first_id    bigint,
    last_id     bigint,
    at          timestamptz NOT NULL DEFAULT now()
);
