CREATE OR REPLACE FUNCTION pgjobs._unchecked_fields_problem(
    p_job pgjobs.jobs,
    OUT message text,
    OUT hint text)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET lock_timeout = '200ms'
AS $$
-- The typo guard of a job whose submit could not apply it, at its first
-- attempt: the document paths in p_job.payload -> 'unchecked_fields'
-- (pgjobs._fields_unchecked: its scope had no row at the submit) that no
-- row of its scope has now, as the message and hint its failure shows; both
-- NULL when every path is in some row (the list is then removed from the
-- job's payload, in the caller's transaction: judged once, for good), or the
-- scope still has no row (the list stays: the job's next claim or page
-- judges it again, so neither a crash after this transaction nor rows that
-- arrive later skip it); only a hint when the target
-- could not be read in time (below: judge it later). The rule and the bound are
-- pgjobs._unknown_fields', as at a submit. Once every path is in some row,
-- the filter's value types are judged too (pgjobs._require_value_types, as
-- pgjobs._judge_filter at a submit): refused, the message says why (SQLSTATE
-- 22023) and the hint is the submit's. Asked by
-- pgjobs._may_start_attempt (at the claim of an export) and
-- pgjobs._run_page (at a page of a delete or backfill: their claim does
-- not judge), which have checked that the job's target is
-- still registered and trusted. An error while judging (the claimer may
-- not read the target) is the problem, not the claim's: the job
-- fails rather than wedging every claim that picks it; a transient one
-- (pgjobs.retryable_sqlstate) is raised, for the page or the claim to fail
-- the attempt only (the job retried). It reads the target
-- inside a claim or a page, so it waits at most 200 ms (lock_timeout, this
-- function's own, as a page's) for the table: a client allowed to delete may LOCK it in a
-- transaction it leaves open, which held the claim, the runner and every
-- tenant's jobs behind it. Past that wait (55P03) it returns a hint and
-- no message, not now: its caller leaves the job queued. A lock says
-- nothing about the job, and failing it let any client that may LOCK a
-- shared table fail every other tenant's job on a new scope. (A page returns
-- 'blocked' then, nothing read.) Locks: the target, ACCESS SHARE (a read);
-- the job's row, to clear the list (its callers hold it already).
DECLARE
    v_reg pgjobs.target_registry;
    v_check record;
    v_walk jsonb;
    v_unknown text[];
    v_paths text[];
    v_error text;
    v_state text;
    v_guess text;
BEGIN
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_job.target;
    IF NOT FOUND OR jsonb_typeof(p_job.payload -> 'unchecked_fields') IS DISTINCT FROM 'array' THEN
        RETURN;
    END IF;
    v_paths := ARRAY(SELECT jsonb_array_elements_text(p_job.payload -> 'unchecked_fields'));
    -- An error here (the claimer may not read the target) would
    -- fail the claim, and every later one that picks the job: the job fails
    -- instead, closed, naming it. Only a job with such paths pays the block.
    BEGIN
        -- A delete's or backfill's page walks at most 100,000 rows a call,
        -- the place reached kept in the payload (unchecked_walk: {"after",
        -- "rows"}) for its next page: a missing path on a 1M-row scope made
        -- one page of 0.4-1.1 s, holding the job's row (a cancel or pause
        -- waited) and its table (an ALTER TABLE queued behind it held every
        -- later reader). An export's claim walks it whole, as before.
        v_walk := p_job.payload -> 'unchecked_walk';
        SELECT * INTO v_check
          FROM pgjobs._unknown_fields_from(v_reg, p_job.scope, v_paths,
                   CASE WHEN jsonb_typeof(v_walk) = 'object' THEN v_walk ->> 'after' END,
                   CASE WHEN jsonb_typeof(v_walk -> 'rows') = 'number'
                        THEN (v_walk ->> 'rows')::bigint ELSE 0 END,
                   CASE WHEN p_job.kind = ANY (pgjobs._engine_kinds()) THEN 100000 END);
        -- An empty list (pgjobs._judge_filter: a json column's value check,
        -- no document path to walk): the scope's first row is the walk.
        IF cardinality(v_paths) = 0 OR v_reg.document_column IS NULL THEN
            EXECUTE format('SELECT count(*) FROM (SELECT FROM %s t WHERE t.%I '
                           'OPERATOR(pg_catalog.=) %s LIMIT 1) s', v_reg.target,
                           v_reg.scope_column, pgjobs._scope_literal(v_reg, p_job.scope))
               INTO v_check.p_rows_read;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        -- The table held past 200 ms (an ALTER TABLE, a client's LOCK TABLE):
        -- nothing is wrong with the job; its caller leaves it queued.
        hint := format('Its table %s is locked by another transaction; a later claim judges '
                       'the job once it ends.', p_job.target::regclass);
        RETURN;
    WHEN query_canceled OR OTHERS THEN
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
        -- A transient error (pgjobs.retryable_sqlstate: out of memory, a
        -- deadlock, a statement canceled, an I/O error) says nothing about
        -- the job: raised, for the caller to fail the attempt only, the job
        -- retried with backoff as a page's own error of that SQLSTATE is
        -- (pgjobs._run_page at a delete's or backfill's page,
        -- pgjobs._may_start_attempt at an export's claim). It failed the job
        -- for good (an export's still did). (query_canceled is not one of
        -- OTHERS: it used to leave the whole claim or page, and an export's
        -- claim that met one failed every claim that picked the job.)
        IF pgjobs.retryable_sqlstate(v_state) THEN
            RAISE;
        END IF;
        message := format('job %s (%s) cannot be started: %s its submit could not judge (the '
                          'scope had no rows then) could not be judged at its start either: %s '
                          '(SQLSTATE %s)', p_job.id, p_job.kind,
                          -- An empty list: a json column's value check (pgjobs._judge_filter).
                          CASE WHEN cardinality(v_paths) = 0
                               THEN 'the comparisons of json columns'
                               ELSE 'the document fields' END,
                          v_error, v_state);
        hint := 'Fix the cause, then pgjobs.retry(' || p_job.id || '); or submit it again with '
                'the option {"allow_unknown_fields": true} if its fields are right.';
        RETURN;
    END;
    IF v_check.p_state = 'budget' THEN
        -- Not judged yet: the paths still unseen and the place reached, for
        -- the next page (which reads no row before the walk ends).
        UPDATE pgjobs.jobs j
           SET payload = j.payload || jsonb_build_object(
                   'unchecked_fields', to_jsonb(ARRAY(
                       SELECT u.p FROM unnest(v_paths) WITH ORDINALITY AS u(p, o)
                        WHERE u.p = ANY (v_check.p_missing) ORDER BY u.o)),
                   'unchecked_walk', jsonb_build_object('after', v_check.p_last,
                                                        'rows', v_check.p_rows_read))
         WHERE j.id = p_job.id;
        RETURN;
    END IF;
    IF v_check.p_state = 'seen' OR v_check.p_rows_read = 0 THEN
        IF v_check.p_rows_read > 0 THEN
            -- Every path in some row: now the filter's value types, which
            -- the submit could not judge either (pgjobs._judge_filter): a
            -- $ne, $nin or negated comparison whose operand's JSON type no
            -- row holds at its path would take every row that has the
            -- field. Refused as the submit refuses it, its hint kept.
            BEGIN
                PERFORM pgjobs._require_value_types(v_reg, p_job.scope,
                                                    p_job.payload -> 'filter', p_job.options);
            EXCEPTION WHEN invalid_parameter_value THEN
                GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
                IF p_job.payload ? 'unchecked_walk' THEN
                    UPDATE pgjobs.jobs j SET payload = j.payload - 'unchecked_walk'
                     WHERE j.id = p_job.id;
                END IF;
                message := format('job %s (%s) cannot be started: its %s (SQLSTATE 22023); the '
                                  'scope had no rows when the job was submitted, so its filter '
                                  'is judged at its start, before it reads a row', p_job.id,
                                  p_job.kind, v_error);
                RETURN;
            END;
            -- Judged against rows, every path in one: the job is cleared, in
            -- the transaction that judged it. A scope still empty leaves the
            -- list in place, for the next claim or page to judge.
            UPDATE pgjobs.jobs j SET payload = j.payload - 'unchecked_fields' - 'unchecked_walk'
             WHERE j.id = p_job.id;
        END IF;
        RETURN;
    END IF;
    -- Judged, and failed: the walk's place goes, so that a retry (the rows
    -- fixed meanwhile) walks the scope from its start again rather than
    -- from where this walk ended.
    IF p_job.payload ? 'unchecked_walk' THEN
        UPDATE pgjobs.jobs j SET payload = j.payload - 'unchecked_walk' WHERE j.id = p_job.id;
    END IF;
    -- Unseen at the end of the scope or past the bound: unknown, each once,
    -- in the order the job lists them.
    v_unknown := ARRAY(SELECT u.p FROM unnest(v_paths) WITH ORDINALITY AS u(p, o)
                        WHERE u.p = ANY (v_check.p_missing) ORDER BY u.o);
    message := format('job %s (%s) cannot be started: it names document field %s, which %s of '
                      'scope %s has; the scope had no rows when the job was submitted, so its '
                      'fields are judged at its start, before it reads a row',
                      p_job.id, p_job.kind,
                      array_to_string(ARRAY(SELECT format('"%s"', u)
                                              FROM unnest(v_unknown) u), ', '),
                      CASE WHEN v_check.p_state <> 'bound' THEN 'no row'
                           ELSE format('none of the first %s rows', v_check.p_rows_read) END,
                      quote_literal(p_job.scope));
    -- The field it probably meant, as the submit's refusal names it.
    SELECT g.guess
      INTO v_guess
      FROM unnest(v_unknown) WITH ORDINALITY AS x(u, n),
           LATERAL (SELECT pgjobs._field_guess(v_reg, p_job.scope, x.u) AS guess) g
     WHERE g.guess IS NOT NULL
     ORDER BY x.n
     LIMIT 1;
    hint := coalesce(v_guess, '') || format('Check the spelling (fields are case-sensitive, '
                   'nested ones a.b.c, in column %I) and submit a new %s; if the field is meant '
                   'to be absent, submit it with the option {"allow_unknown_fields": true}.',
                   v_reg.document_column, p_job.kind);
END
$$;
