CREATE OR REPLACE FUNCTION pgjobs._health()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The database health signals that pgjobs._throttle compares with a
-- writing job's limits, as one JSON object:
--   at          epoch seconds of the sample
--   lsn         pg_current_wal_lsn()
--   lag, lag_from  bytes the furthest standby (pg_stat_replication: replay,
--               else flush/write/sent position) or active replication slot
--               (confirmed_flush_lsn, else restart_lsn) is behind lsn, and
--               its application_name or "slot <name>"; absent: none seen
--   wal_rate    bytes of WAL per second since this session's previous
--               sample (absent on a session's first sample)
--   autovacuum  oids of this database's tables an autovacuum worker is
--               vacuuming now (pg_stat_progress_vacuum)
--   xact_age    seconds the oldest transaction of another client backend
--               has been open
-- One catalog query, at most every 0.5 s per session: a sample younger
-- than that is returned from the session setting pgjobs.health, which a
-- runner procedure (one session) keeps across its pages. A session can
-- only fool its own runner with it.
-- SECURITY DEFINER: the LSNs of pg_stat_replication, the relid of
-- pg_stat_progress_vacuum and other roles' xact_start are visible only to
-- members of pg_read_all_stats (pg_monitor) and superusers, so pgjobs'
-- owner needs pg_monitor for those signals (doctor: throttle.visibility);
-- without it they read as absent, never as over a limit. Executable by
-- pgjobs_admin only. On a standby (in recovery) returns {}: nothing writes
-- there. Locks nothing.
DECLARE
    v_prev jsonb := nullif(current_setting('pgjobs.health', true), '')::jsonb;
    v_now double precision := extract(epoch FROM clock_timestamp());
    v_lsn pg_lsn;
    v_sample jsonb;
BEGIN
    IF v_prev ? 'at' AND v_now - (v_prev ->> 'at')::double precision BETWEEN 0 AND 0.5 THEN
        RETURN v_prev;
    END IF;
    IF pg_is_in_recovery() THEN
        RETURN '{}'::jsonb;
    END IF;
    v_lsn := pg_current_wal_lsn();
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'at', v_now,
               'lsn', v_lsn::text,
               'lag', l.lag,
               'lag_from', l.name,
               'wal_rate', CASE WHEN v_prev ? 'lsn'
                                 AND v_now > (v_prev ->> 'at')::double precision
                           THEN round((v_lsn - (v_prev ->> 'lsn')::pg_lsn)
                                      / (v_now - (v_prev ->> 'at')::double precision)::numeric)
                           END,
               'autovacuum', coalesce(
                   (SELECT jsonb_agg(p.relid::bigint)
                      FROM pg_stat_progress_vacuum p
                      JOIN pg_stat_activity a ON a.pid = p.pid
                     WHERE a.backend_type = 'autovacuum worker'
                       AND p.datname = current_database() AND p.relid IS NOT NULL),
                   '[]'::jsonb),
               'xact_age',
                   (SELECT round(extract(epoch FROM clock_timestamp() - min(a.xact_start))::numeric,
                                 3)
                      FROM pg_stat_activity a
                     WHERE a.backend_type = 'client backend' AND a.xact_start IS NOT NULL
                       AND a.pid <> pg_backend_pid())))
      INTO v_sample
      FROM (SELECT NULL::numeric AS lag, NULL::text AS name) dflt
      LEFT JOIN LATERAL (
          SELECT s.lag, s.name
            FROM (SELECT v_lsn - coalesce(r.replay_lsn, r.flush_lsn, r.write_lsn, r.sent_lsn)
                             AS lag,
                         coalesce(nullif(r.application_name, ''), 'pid ' || r.pid) AS name
                    FROM pg_stat_replication r
                  UNION ALL
                  SELECT v_lsn - coalesce(sl.confirmed_flush_lsn, sl.restart_lsn),
                         'slot ' || sl.slot_name
                    FROM pg_replication_slots sl
                   WHERE sl.active) s
           WHERE s.lag IS NOT NULL
           ORDER BY s.lag DESC
           LIMIT 1) l ON true;
    PERFORM set_config('pgjobs.health', v_sample::text, false);
    RETURN v_sample;
END
$$;
