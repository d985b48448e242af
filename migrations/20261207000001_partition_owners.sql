-- Cluster mode: who owns each partition of the device space, and how far its fix log is
-- stored. An owner takes a partition by raising `epoch` to its lease's epoch (JetStream KV
-- revisions only grow), which waits for any transaction of the previous owner still holding
-- the row. Every transaction of an owner checks its epoch on this row first (the writer with
-- `fence_partition`, the alert commit with FOR SHARE), so once a newer owner has claimed the
-- row, a deposed one can commit nothing more for the partition: its positions would break the
-- partition's `seq` order, and its alerts would double the new owner's. Single-node servers
-- never use this table.
CREATE TABLE partition_owners (
    partition   smallint    PRIMARY KEY,
    epoch       bigint      NOT NULL,
    node        text        NOT NULL,
    -- Stream sequence of the last fix log message whose fixes are stored.
    stored_seq  bigint      NOT NULL DEFAULT 0,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- Called first in every write transaction of an owner: fails (SQLSTATE GT001) unless `owner_epoch`
-- still owns the partition; moves the stored sequence forward when one is given. The row lock it
-- takes orders the transactions of successive owners.
CREATE FUNCTION fence_partition(p smallint, owner_epoch bigint, seq bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE partition_owners
       SET stored_seq = GREATEST(stored_seq, coalesce(seq, stored_seq))
     WHERE partition = p AND epoch = owner_epoch;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'partition % is no longer owned with epoch %', p, owner_epoch
            USING ERRCODE = 'GT001';
    END IF;
END $$;
