-- The alert writer's commit as one function, called outside any transaction block: the call is
-- its own transaction, so a commit is one round trip to the database (before, each of its
-- eight statements and the COMMIT were one each, and under load every round trip waits for
-- both processes to be scheduled). In order:
--   1. the lock that serialises alert commits across every process of the database, so ids
--      are drawn and committed in the same order and a cursor never skips an alert that
--      commits later;
--   2. cluster mode: every (partition, epoch) the evaluation steps were made with must still own
--      its partition, its row locked until the commit (SQLSTATE GT001 otherwise, and nothing is
--      stored: the writer leaves the deposed steps out and calls again);
--   3. the fence states, offline devices and proximity pairs the steps leave;
--   4. the alerts, ids drawn in the order given, and their webhook deliveries (`hook_alerts`
--      are 1-based positions in the alert arrays);
--   5. a notification on `channel` with the newest id, the evaluation watermarks, and the
--      writer's commit mark (which commit this was, with its first and last alert ids).
-- Returns the stored alerts' ids and creation times, in id order.
CREATE FUNCTION commit_alert_changes(
    mark_writer text, mark_commit bigint, channel text,
    claim_partitions smallint[], claim_epochs bigint[],
    gone_visit_devices text[], gone_visit_fences text[],
    visit_devices text[], visit_fences text[], visit_shards smallint[],
    visit_entered_at timestamptz[], visit_dwell_fired boolean[], visit_overspeed_fired boolean[],
    back_devices text[], gone_devices text[], gone_since timestamptz[],
    apart_rules text[], apart_devices text[], apart_others text[],
    near_rules text[], near_devices text[], near_others text[], near_since timestamptz[],
    alert_devices text[], alert_fences text[], alert_fence_names text[], alert_kinds text[],
    alert_ts timestamptz[], alert_lons double precision[], alert_lats double precision[],
    alert_speeds double precision[], alert_interpolated boolean[],
    alert_received_at timestamptz[], alert_rules text[], alert_others text[],
    alert_distances double precision[],
    hook_alerts integer[], hook_urls text[],
    watermark_shards smallint[], watermark_seqs bigint[]
) RETURNS TABLE (stored_id bigint, stored_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    created timestamptz[];
    owned integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('geotrack.alerts'));

    IF cardinality(claim_partitions) > 0 THEN
        SELECT count(*) INTO owned FROM (
            SELECT 1 FROM partition_owners o
             WHERE (o.partition, o.epoch) IN (SELECT * FROM unnest(claim_partitions, claim_epochs))
               FOR SHARE
        ) AS locked;
        IF owned < cardinality(claim_partitions) THEN
            RAISE EXCEPTION 'a partition of this alert commit has a newer owner'
                USING ERRCODE = 'GT001';
        END IF;
    END IF;

    DELETE FROM fence_states s
     USING unnest(gone_visit_devices, gone_visit_fences) AS g(device, fence)
     WHERE s.device = g.device AND s.fence = g.fence;
    INSERT INTO fence_states (device, fence, shard, entered_at, dwell_fired, overspeed_fired)
    SELECT * FROM unnest(visit_devices, visit_fences, visit_shards, visit_entered_at,
                         visit_dwell_fired, visit_overspeed_fired)
    ON CONFLICT (device, fence) DO UPDATE SET shard = EXCLUDED.shard,
        entered_at = EXCLUDED.entered_at, dwell_fired = EXCLUDED.dwell_fired,
        overspeed_fired = EXCLUDED.overspeed_fired;

    DELETE FROM offline_devices WHERE device = ANY(back_devices);
    INSERT INTO offline_devices (device, since)
    SELECT * FROM unnest(gone_devices, gone_since)
    ON CONFLICT (device) DO UPDATE SET since = EXCLUDED.since;

    DELETE FROM proximity_pairs p
     USING unnest(apart_rules, apart_devices, apart_others) AS g(rule, device, other)
     WHERE p.rule = g.rule AND p.device = g.device AND p.other = g.other;
    INSERT INTO proximity_pairs (rule, device, other, since)
    SELECT * FROM unnest(near_rules, near_devices, near_others, near_since)
    ON CONFLICT (rule, device, other) DO UPDATE SET since = EXCLUDED.since;

    WITH inserted AS (
        INSERT INTO alerts (device, fence, fence_name, kind, ts, geom, speed_mps, interpolated,
                            received_at, rule, other_device, distance_m)
        SELECT a.device, a.fence, a.fence_name, a.kind, a.ts,
               CASE WHEN a.lon IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(a.lon, a.lat), 4326) END,
               a.speed, a.interpolated, a.received_at, a.rule, a.other_device, a.distance_m
          FROM unnest(alert_devices, alert_fences, alert_fence_names, alert_kinds, alert_ts,
                      alert_lons, alert_lats, alert_speeds, alert_interpolated, alert_received_at,
                      alert_rules, alert_others, alert_distances)
               WITH ORDINALITY AS a(device, fence, fence_name, kind, ts, lon, lat, speed,
                                    interpolated, received_at, rule, other_device, distance_m, ord)
         ORDER BY a.ord
        RETURNING alerts.id, alerts.created_at
    )
    SELECT array_agg(i.id ORDER BY i.id), array_agg(i.created_at ORDER BY i.id)
      INTO ids, created
      FROM inserted i;

    INSERT INTO webhook_deliveries (alert_id, url)
    SELECT ids[h.ord], h.url FROM unnest(hook_alerts, hook_urls) AS h(ord, url);

    IF cardinality(ids) > 0 THEN
        PERFORM pg_notify(channel, ids[cardinality(ids)]::text);
    END IF;

    INSERT INTO eval_watermarks (shard, seq)
    SELECT * FROM unnest(watermark_shards, watermark_seqs)
    ON CONFLICT (shard) DO UPDATE SET seq = GREATEST(eval_watermarks.seq, EXCLUDED.seq);

    INSERT INTO alert_commit_marks (writer, commit_id, first_id, last_id)
    VALUES (mark_writer, mark_commit, ids[1], ids[cardinality(ids)])
    ON CONFLICT (writer) DO UPDATE SET commit_id = EXCLUDED.commit_id,
        first_id = EXCLUDED.first_id, last_id = EXCLUDED.last_id, at = now();

    RETURN QUERY SELECT * FROM unnest(ids, created);
END $$;
