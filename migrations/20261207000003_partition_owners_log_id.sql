-- Which incarnation of the cluster's fix log `stored_seq` counts in (the stream's creation
-- time). A log deleted and created again (`geotrack cluster destroy`, an operator) starts its
-- sequences over: a new owner's claim resets the stored position when the id differs, instead
-- of skipping every new message up to the old position.
ALTER TABLE partition_owners ADD COLUMN log_id text NOT NULL DEFAULT '';
