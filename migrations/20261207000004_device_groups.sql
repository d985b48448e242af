-- Device groups (dispatch::groups): named sets of devices by listed ids and id prefixes, used
-- as filters of the dispatch queries. Read whole into memory by every server.
CREATE TABLE device_groups (
    id         text        PRIMARY KEY,
    name       text        NOT NULL DEFAULT '',
    devices    text[]      NOT NULL DEFAULT '{}',
    prefixes   text[]      NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
