CREATE OR REPLACE PROCEDURE pgjobs.run(p_budget interval DEFAULT '50 seconds')
LANGUAGE plpgsql
AS $$
-- The engine's loop, called by pg_cron (or `pgjobs run --loop`): claims
-- delete and backfill jobs and works through their pages until the budget
-- is spent or nothing is left, COMMITting after the claim and after every
-- page, so each page is one short transaction and a crash loses at most the
-- page in flight. A job still unfinished when the budget runs out is
-- released to the queue with its cursor (no attempt counted) for the next
-- run to resume.
--
-- No `SET search_path` clause: PostgreSQL forbids COMMIT in a procedure that
-- has one. Every name below is schema-qualified instead.
DECLARE
    v_deadline timestamptz := clock_timestamp() + p_budget;
    v_worker text := format('run:%s:%s', pg_catalog.pg_backend_pid(),
                            pg_catalog.left(pg_catalog.md5(pg_catalog.random()::text), 6));
    v_id bigint;
    v_state text;
BEGIN
    IF p_budget IS NULL OR p_budget < interval '0' OR p_budget > interval '1 day' THEN
        RAISE EXCEPTION 'budget must be from 0 to 1 day, not %', p_budget
            USING ERRCODE = '22023', HINT = 'The default is 50 seconds, under pg_cron''s minute.';
    END IF;
    LOOP
        EXIT WHEN pg_catalog.clock_timestamp() >= v_deadline;
        v_id := NULL;
        SELECT c.id INTO v_id
          FROM pgjobs.claim(ARRAY['delete', 'backfill'], v_worker, interval '30 seconds', 1) c;
        COMMIT;
        EXIT WHEN v_id IS NULL;
        LOOP
            v_state := pgjobs._run_page(v_id, v_worker);
            COMMIT;
            EXIT WHEN v_state NOT IN ('more', 'retry');
            IF v_state = 'retry' THEN
                PERFORM pg_catalog.pg_sleep(0.05);
            END IF;
            IF pg_catalog.clock_timestamp() >= v_deadline THEN
                PERFORM pgjobs.release(v_id, v_worker);
                COMMIT;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

COMMENT ON PROCEDURE pgjobs.run(interval) IS
'The engine loop: claims delete/backfill jobs and runs their pages, one COMMIT per page, until '
'p_budget is spent or no work is left. pg_cron calls it; so does `pgjobs run --loop`.';
