CREATE OR REPLACE FUNCTION pgjobs._cutoff_clause(
    p_reg pgjobs.target_registry,
    p_cutoff timestamptz,
    OUT clause text,
    OUT horizon timestamptz,
    OUT without_zone boolean,
    OUT time_zone text)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The part of a job's row set that says "this row existed when the job was
-- submitted", as one SQL boolean over the target's unqualified columns
-- and its xmin system column. The promise: a row whose inserting
-- transaction commits after the submit is never touched by the job nor
-- hidden by its mask.
--
-- created_at alone cannot keep it: `DEFAULT now()` is the start of the
-- inserting transaction, so a transaction that began before the submit and
-- commits after it writes rows dated before the cutoff. A row qualifies when
--   (a) created_at <= cutoff (a NULL created_at is unknown: xmin decides), and
--   (b) created_at is older than the horizon: the start of the oldest other
--       transaction of this database running at the submit. No running
--       transaction's now() is older, so such a row was not written by one
--       of them: it was committed before the submit (and may have been
--       updated since: an update keeps it the job's); or
--   (c) its current version was written by a transaction the submit's
--       snapshot sees (or by the submitting transaction itself, at its top
--       level).
-- Rows dated at or after the horizon (the only ones a running transaction
-- can have written with now()/clock_timestamp()) are judged by (c): those
-- of transactions still running at the submit, or begun later, are spared.
-- Not distinguishable, and documented (docs/engine.md, "The cutoff"): a
-- backdated created_at (older than the horizon) written after the submit
-- reads as an old row updated after it, and is the job's; a row dated after
-- the horizon, committed before the submit and updated after it, reads as
-- new, and is spared. The horizon falls back to -infinity (only (c)
-- decides) when some session's transaction start is hidden from this role
-- (pg_stat_activity: a session, client or background worker, of a role it
-- may not read; grant pg_read_all_stats to the role owning pgjobs),
-- track_activities is off (here, or in another session of this database:
-- its state 'disabled'), a prepared transaction exists here, or the
-- submit is REPEATABLE READ or SERIALIZABLE (its snapshot precedes the read).
--
-- (c)'s in-progress set holds transaction IDs, subtransactions' included
-- (the snapshot functions list top-level IDs only, and a subtransaction's
-- lock is gone once it is released): every ID below the snapshot's xmax
-- whose pg_xact_status is 'in progress' just after the snapshot. Such an ID
-- was running at the snapshot; one that ran at the snapshot but finished
-- before the look belongs to a transaction the snapshot lists as running,
-- so when any of those is no longer running the look is repeated (a
-- REPEATABLE READ submit cannot repeat it: 40001, submit again). The
-- range starts at the snapshot's xmin; the submit raises 55000 while one
-- transaction holds it back by more than 100,000 IDs.
--
-- xmin is a 32-bit transaction ID, compared through age() (the distance
-- back from the reader's transaction, or its next ID): a row is later than
-- the submit when its xmin is no older than the snapshot's xmax, i.e.
-- 0 <= age(xmin) <= age(xmax) (a frozen row 2^31 or more transactions old
-- has a negative age, which the mask with 2^32 - 1 turns into a large one);
-- one age() per row and integer arithmetic (age(xmax) is an InitPlan),
-- right while a job lasts less than 2^31 transactions. Only rows dated
-- after the horizon reach this test, so old frozen rows never do.
--
-- A `timestamp` (without time zone) created_at holds wall-clock time in
-- the target's registered created_at_time_zone (default UTC), whatever the
-- submitter's TimeZone. Literals are ISO 8601, and the text has no `%`
-- (clients splice the mask into queries of drivers that use %s
-- placeholders). Returns the text (clause) and what it was built from:
-- the horizon, and how its literal is written (pgjobs._time_literal's
-- without_zone and time_zone), which a delete stores in jobs.survivors.
-- Locks nothing.
DECLARE
    v_tz text := coalesce(p_reg.options ->> 'created_at_time_zone', 'UTC');
    v_is_timestamp boolean;
    v_own bigint := pg_current_xact_id()::text::bigint;
    v_snapshot pg_snapshot;
    v_low bigint;
    v_running bigint[];
    v_xmax bigint;
    v_try integer := 0;
    v_horizon timestamptz;
    v_hidden boolean;
    v_back timestamptz;
BEGIN
    -- A domain (over a domain ...) is judged by its base type, as the
    -- registration judged it (pgjobs._registration_problem).
    SELECT pgjobs._base_type(a.atttypid) = 'timestamp'::regtype
      INTO v_is_timestamp
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attname = p_reg.created_at_column;

    -- The horizon, read fresh (pg_stat_activity is cached per transaction),
    -- and before the snapshot: a transaction running at the snapshot was
    -- then running at this read too, so its start is counted. Read after
    -- the look, a transaction the look found running could commit in
    -- between: its rows, dated before a horizon that no longer counted it,
    -- were the job's by (b) although the snapshot did not see them (5 of
    -- 1,500 submits beside a writer, tests/test_trust_cutoff.py). One that
    -- begins after this read began after the submit's now(): its rows are
    -- dated at or after the horizon, and (c) judges them.
    PERFORM pg_stat_clear_snapshot();
    -- A session that turned track_activities off shows state 'disabled'
    -- and no xact_start however old its transaction: as hidden as one of a
    -- role this one may not see (its rows written before the submit were
    -- older than a horizon that did not count it, and the job's).
    -- Hidden by role: PostgreSQL shows such a row with its query
    -- '<insufficient privilege>' and every column but pid, the database and
    -- the role NULL, backend_type too: the test that was here (state NULL
    -- and backend_type 'client backend') never matched one, and a client of
    -- another role, or a background worker writing as one (pg_cron's
    -- workers, a logical replication apply worker, any extension's), was
    -- left out of the horizon. Any session with a role counts: client
    -- backends, walsenders and background workers have one; autovacuum
    -- workers, which write no row of a table, have none. (A client
    -- backend still starting up, state NULL, counts as before.)
    SELECT min(a.xact_start),
           bool_or((a.state IS NULL AND a.backend_type = 'client backend')
                   OR a.state = 'disabled'
                   OR (a.state IS NULL AND a.usesysid IS NOT NULL
                       AND a.query = '<insufficient privilege>'))
      INTO v_horizon, v_hidden
      FROM pg_catalog.pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid();
    -- A REPEATABLE READ or SERIALIZABLE submit's snapshot is its
    -- transaction's, taken by its first statement, before this read: a
    -- transaction running then with no ID yet (so in no running list) that
    -- wrote and committed before this read is not counted, and its rows,
    -- dated at its start, read as older than the horizon although the
    -- snapshot never saw them (tests/test_trust_cutoff.py). Only the
    -- snapshot decides for such a submit.
    IF coalesce(v_hidden, false)
       OR current_setting('transaction_isolation') <> 'read committed'
       OR current_setting('track_activities') <> 'on'
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts x
                   WHERE x.database = current_database()) THEN
        v_horizon := '-infinity';
    END IF;
    v_horizon := least(coalesce(v_horizon, p_cutoff), p_cutoff);

    LOOP
        v_try := v_try + 1;
        v_snapshot := pg_current_snapshot();
        v_low := pg_snapshot_xmin(v_snapshot)::text::bigint;
        v_xmax := pg_snapshot_xmax(v_snapshot)::text::bigint;
        IF v_xmax - v_low > 100000 THEN
            RAISE EXCEPTION 'a transaction has held back % transaction IDs; pgjobs cannot yet '
                            'tell which rows exist at the submit', v_xmax - v_low
                USING ERRCODE = '55000',
                HINT = coalesce((SELECT format('The transaction of pid %s (role %s, open since '
                                               '%s) is the oldest: end it, then submit again.',
                                               a.pid, a.usename, a.xact_start)
                                   FROM pg_catalog.pg_stat_activity a
                                  WHERE a.backend_xid::text::bigint = v_low % 4294967296
                                  LIMIT 1),
                                'End the oldest open transaction (pg_stat_activity), then '
                                'submit again.');
        END IF;
        SELECT coalesce(array_agg(x), '{}') INTO v_running
          FROM generate_series(v_low, v_xmax - 1) x
         WHERE x <> v_own AND pg_xact_status(x::text::xid8) = 'in progress';
        EXIT WHEN NOT EXISTS (
            SELECT 1 FROM pg_snapshot_xip(v_snapshot) s
             WHERE s::text::bigint <> ALL (v_running));
        -- A REPEATABLE READ or SERIALIZABLE submit has one snapshot for its
        -- whole transaction: looking again cannot help.
        IF v_try >= 50 OR current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'could not tell which transactions were running at the submit'
                USING ERRCODE = '40001',
                HINT = 'Submit again, in a READ COMMITTED transaction (a transaction that was '
                       'running at this transaction''s snapshot has ended since).';
        END IF;
    END LOOP;
    SELECT coalesce(array_agg(DISTINCT u.x % 4294967296 ORDER BY u.x % 4294967296), '{}')
      INTO v_running
      FROM unnest(v_running) AS u(x);

    -- A wall-clock created_at goes back when its zone leaves summer time:
    -- at 03:00 CEST Europe/Paris reads 02:00 again, so a row written an
    -- hour after a submit at 02:50 CEST is dated 02:10, before the horizon,
    -- and read as old: a nightly purge still running then deleted the
    -- rows of that hour. So the horizon is moved back below the earliest
    -- wall-clock time the zone shows in the 3 hours after it (sampled each
    -- minute, less one minute for a change between samples); such rows
    -- are then judged by the snapshot, as rows dated after the horizon are.
    -- Nothing moves when the zone does not go back then.
    IF v_is_timestamp AND isfinite(v_horizon) THEN
        SELECT v_horizon - (timezone(v_tz, v_horizon) - min(timezone(v_tz, m.at)))
               - interval '1 minute'
          INTO v_back
          FROM generate_series(v_horizon, v_horizon + interval '3 hours',
                               interval '1 minute') AS m(at)
        HAVING min(timezone(v_tz, m.at)) < timezone(v_tz, v_horizon);
        v_horizon := coalesce(v_back, v_horizon);
    END IF;

    horizon := v_horizon;
    without_zone := v_is_timestamp;
    time_zone := v_tz;
    clause := format(
        'coalesce(%1$I OPERATOR(pg_catalog.<=) %2$s, true) AND (%1$I OPERATOR(pg_catalog.<) %3$s '
        'OR (pg_catalog.age(xmin)::bigint OPERATOR(pg_catalog.&) 4294967295) '
        'OPERATOR(pg_catalog.>) (SELECT pg_catalog.age(%4$L::pg_catalog.xid))%5$s '
        'OR xmin OPERATOR(pg_catalog.=) %6$L::pg_catalog.xid)',
        p_reg.created_at_column,
        pgjobs._time_literal(p_cutoff, v_is_timestamp, v_tz),
        pgjobs._time_literal(v_horizon, v_is_timestamp, v_tz),
        v_xmax % 4294967296,
        CASE WHEN cardinality(v_running) = 0 THEN ''
             ELSE format(' AND NOT xmin OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.xid[])',
                         v_running) END,
        v_own % 4294967296);
END
$$;
